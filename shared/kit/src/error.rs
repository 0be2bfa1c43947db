//! The error model (docs/errors.md): `tonic::Status` carrying `ErrorInfo { reason, domain,
//! metadata }`, plus `BadRequest` field violations for validation failures. Storage and
//! other unexpected errors are logged and returned as an opaque `INTERNAL`.
//!
//! Every status with an `ErrorInfo` is built here, and every reason is a constant of the
//! catalogue (`crate::reasons`); in debug builds these constructors panic on a reason the
//! catalogue does not list. [`classify`] is the one rule that sorts an upstream's failure
//! into a refusal (final) or an outage (retry).

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::reasons::debug_assert_catalogued;
pub use crate::reasons::{INTERNAL_ERROR, MALFORMED_REQUEST, STORAGE_CONFLICT, STORAGE_UNAVAILABLE, VALIDATION_FAILED};

/// A status with an `ErrorInfo` detail.
///
/// `domain` is `economy.<svc>`; `reason` a stable UPPER_SNAKE string; `metadata` extra
/// key/value context (ids, amounts) for clients.
///
/// Panics in debug builds when `reason` is not in the catalogue (`crate::reasons`).
#[track_caller]
pub fn status<I, K, V>(code: Code, domain: &str, reason: &str, message: impl Into<String>, metadata: I) -> Status
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    debug_assert_catalogued(reason);
    let metadata: HashMap<String, String> =
        metadata.into_iter().map(|(key, value)| (key.into(), value.into())).collect();
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, domain, metadata))
}

/// An `INVALID_ARGUMENT` status with a specific `reason` and one `BadRequest` violation
/// naming `field` (a field path or a metadata key) and what it must look like.
///
/// Panics in debug builds when `reason` is not in the catalogue (`crate::reasons`).
#[track_caller]
pub fn invalid_field(domain: &str, reason: &str, field: &str, description: &str) -> Status {
    debug_assert_catalogued(reason);
    let mut details = ErrorDetails::with_error_info(reason, domain, HashMap::new());
    details.set_bad_request(vec![FieldViolation::new(field, description)]);
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {description}"), details)
}

/// `INVALID_ARGUMENT` / `MALFORMED_REQUEST`: the request's bytes do not decode as its
/// message (truncated, wrong wire types, invalid UTF-8 in a string). Names no field.
pub fn malformed_request(domain: &str) -> Status {
    status(
        Code::InvalidArgument,
        domain,
        MALFORMED_REQUEST,
        "the request message does not decode",
        Vec::<(String, String)>::new(),
    )
}

/// Logs `error` and returns an opaque `INTERNAL` status that leaks nothing (no SQL).
pub fn internal(domain: &str, error: &dyn std::fmt::Display) -> Status {
    tracing::error!(%error, domain, "internal error");
    status(Code::Internal, domain, INTERNAL_ERROR, "internal error", Vec::<(String, String)>::new())
}

/// The status of a storage failure: `DEADLINE_EXCEEDED` when the statement was stopped
/// because the request's deadline passed (a statement timeout or interrupt, the backstop
/// of a long read), `ABORTED` / `STORAGE_CONFLICT` when `cause` is a
/// conflict the database aborted the write over ([`StorageCause::is_conflict`]),
/// `UNAVAILABLE` / `STORAGE_UNAVAILABLE` when the database could not be reached
/// ([`StorageCause::is_connection_lost`]): the caller retries either with the same
/// idempotency key. Else the opaque `INTERNAL` ([`internal`], logging `error`).
/// (docs/errors.md; docs/operations.md, "Conflicts and retries"; deploy/FAILOVER.md)
pub fn storage(domain: &str, cause: &StorageCause, error: &dyn std::fmt::Display) -> Status {
    if cause.is_statement_stopped() && crate::server::deadline::passed() {
        // The statement ran past the request's deadline and its backstop stopped it
        // (docs/operations.md, "Deadlines").
        return crate::server::deadline::exceeded(domain);
    }
    if cause.is_connection_lost() {
        tracing::warn!(%error, domain, "database unreachable");
        let message = "the database is unreachable; retry with the same idempotency key";
        return status(Code::Unavailable, domain, STORAGE_UNAVAILABLE, message, Vec::<(String, String)>::new());
    }
    if !cause.is_conflict() {
        return internal(domain, error);
    }
    tracing::warn!(%error, domain, "write lost a database conflict after its retries");
    let message = "the database aborted the write over a conflict with a concurrent one; retry with the same key";
    status(Code::Aborted, domain, STORAGE_CONFLICT, message, Vec::<(String, String)>::new())
}

/// Whether `status` refuses one row of a batch import for the row's own sake (a bad
/// field, an unknown reference, a taken key: `INVALID_ARGUMENT`, `NOT_FOUND`,
/// `FAILED_PRECONDITION`, `ALREADY_EXISTS`), so the batch reports it and goes on; any
/// other status is the service's and fails the call (docs/import.md).
pub fn is_row_refusal(status: &Status) -> bool {
    matches!(status.code(), Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists)
}

/// Collects field violations of one request; `finish` turns them into
/// `INVALID_ARGUMENT` / `VALIDATION_FAILED` with a `BadRequest` detail.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records a violation of `field` (a proto field path) unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, description: &str) -> &mut Self {
        if !ok {
            self.add(field, description);
        }
        self
    }

    /// Records a violation of `field`.
    pub fn add(&mut self, field: &str, description: impl Into<String>) -> &mut Self {
        self.0.push(FieldViolation::new(field, description));
        self
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when empty, else the `INVALID_ARGUMENT` status for `domain`.
    pub fn finish(self, domain: &str) -> Result<(), Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let message = self
            .0
            .iter()
            .map(|violation| format!("{}: {}", violation.field, violation.description))
            .collect::<Vec<_>>()
            .join("; ");
        let mut details = ErrorDetails::with_error_info(VALIDATION_FAILED, domain, HashMap::new());
        details.set_bad_request(self.0);
        Err(Status::with_error_details(Code::InvalidArgument, message, details))
    }
}

/// The `ErrorInfo` reason of a status, if it carries one.
pub fn reason(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// The fields named by a status's `BadRequest` detail.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

/// How a caller treats an upstream service's failure ([`classify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A business answer (insufficient balance, item not available, …): final for this
    /// request; the same request gets the same answer.
    Refused(Refusal),
    /// No answer, or a transient or unexpected one: retry later with the same idempotency
    /// key.
    Unavailable,
}

/// An upstream's business refusal: its status's code, `ErrorInfo` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The gRPC code.
    pub code: Code,
    /// `ErrorInfo.domain` (`economy.<svc>`).
    pub domain: String,
    /// `ErrorInfo.reason`, a catalogued reason.
    pub reason: String,
    /// The status message.
    pub message: String,
}

/// Codes that are a business refusal when the status carries an `ErrorInfo`.
const REFUSAL_CODES: [Code; 6] = [
    Code::InvalidArgument,
    Code::FailedPrecondition,
    Code::NotFound,
    Code::AlreadyExists,
    Code::OutOfRange,
    Code::PermissionDenied,
];

/// Sorts an upstream's failure into a refusal (final) or an outage (retry): the one rule
/// of the market's and redemption's clients and of the gateway's own upstream calls
/// (docs/errors.md, "Refused or unavailable").
///
/// A refusal is a status with an `ErrorInfo` detail and one of the codes
/// `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `NOT_FOUND`, `ALREADY_EXISTS`,
/// `OUT_OF_RANGE`, `PERMISSION_DENIED`: the service looked at the request and said no.
/// Everything else is an outage: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED`,
/// `RESOURCE_EXHAUSTED`, `ABORTED`, `UNKNOWN`, `INTERNAL`, `UNAUTHENTICATED` (keys or
/// clocks disagree between services), `UNIMPLEMENTED` (versions disagree), `DATA_LOSS`,
/// and any bare status without `ErrorInfo` — those come from the transport, a proxy or a
/// limit, not from a service's rules.
pub fn classify(status: &Status) -> Upstream {
    if !REFUSAL_CODES.contains(&status.code()) {
        return Upstream::Unavailable;
    }
    match status.get_details_error_info() {
        Some(info) => Upstream::Refused(Refusal {
            code: status.code(),
            domain: info.domain,
            reason: info.reason,
            message: status.message().to_owned(),
        }),
        None => Upstream::Unavailable,
    }
}

/// The cause of an unexpected storage failure — a database error, a row that does not
/// parse, a broken invariant of stored data — kept as the `#[source]` of a service's
/// `Storage` error so logs show the whole chain; clients see [`storage`]'s status, which
/// never includes it.
///
/// Two causes are equal when their messages are (tests compare errors).
#[derive(Clone)]
pub struct StorageCause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl StorageCause {
    /// Wraps any error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// The wrapped error, e.g. to downcast it to `sqlx::Error`.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// Whether the cause is a database conflict a retry of the whole write may win
    /// ([`crate::db::is_retryable_conflict`]).
    pub fn is_conflict(&self) -> bool {
        self.0.downcast_ref::<sqlx::Error>().is_some_and(crate::db::is_retryable_conflict)
    }

    /// Whether the cause is a statement the database stopped before it finished
    /// ([`crate::db::is_statement_stopped`]).
    pub fn is_statement_stopped(&self) -> bool {
        self.0.downcast_ref::<sqlx::Error>().is_some_and(crate::db::is_statement_stopped)
    }

    /// Whether the cause is a database that could not be reached or dropped the connection
    /// ([`crate::db::is_connection_lost`]).
    pub fn is_connection_lost(&self) -> bool {
        self.0.downcast_ref::<sqlx::Error>().is_some_and(crate::db::is_connection_lost)
    }
}

impl std::fmt::Debug for StorageCause {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, formatter)
    }
}

impl std::fmt::Display for StorageCause {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, formatter)
    }
}

/// Transparent: the wrapped error's own source comes next in the chain.
impl std::error::Error for StorageCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for StorageCause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for StorageCause {}

impl From<sqlx::Error> for StorageCause {
    fn from(error: sqlx::Error) -> Self {
        Self::new(error)
    }
}

impl From<serde_json::Error> for StorageCause {
    fn from(error: serde_json::Error) -> Self {
        Self::new(error)
    }
}

/// A broken invariant described in words (a corrupt row, a row that vanished).
impl From<String> for StorageCause {
    fn from(message: String) -> Self {
        Self(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(message)))
    }
}

/// A broken invariant described in words.
impl From<&str> for StorageCause {
    fn from(message: &str) -> Self {
        Self::from(message.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reasons::{HOLD_EXPIRED, INSUFFICIENT_BALANCE};

    #[test]
    fn status_carries_reason_and_domain() {
        let status = status(Code::FailedPrecondition, "economy.test", HOLD_EXPIRED, "msg", [("id", "7")]);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), (HOLD_EXPIRED, "economy.test"));
        assert_eq!(info.metadata.get("id").map(String::as_str), Some("7"));
    }

    #[test]
    fn violations_become_bad_request() {
        let mut violations = Violations::default();
        violations.check(true, "ok", "fine").check(false, "amount", "must be positive");
        let status = violations.finish("economy.test").expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason(&status).as_deref(), Some(VALIDATION_FAILED));
        assert_eq!(violated_fields(&status), ["amount"]);
    }

    #[test]
    #[should_panic(expected = "not in the error-reason catalogue")]
    #[cfg(debug_assertions)]
    fn an_uncatalogued_reason_fails_in_debug_builds() {
        let _ = status(Code::FailedPrecondition, "economy.test", "NOT_A_CATALOGUED_REASON", "msg", [("id", "7")]);
    }

    fn with_info(code: Code) -> Status {
        status(code, "economy.ledger", INSUFFICIENT_BALANCE, "no", Vec::<(String, String)>::new())
    }

    #[test]
    fn business_answers_with_error_info_are_refusals() {
        for code in REFUSAL_CODES {
            match classify(&with_info(code)) {
                Upstream::Refused(refusal) => {
                    assert_eq!(refusal.code, code);
                    assert_eq!(
                        (refusal.domain.as_str(), refusal.reason.as_str()),
                        ("economy.ledger", INSUFFICIENT_BALANCE)
                    );
                }
                Upstream::Unavailable => panic!("{code:?} with ErrorInfo is a refusal"),
            }
        }
    }

    #[test]
    fn outages_and_bare_statuses_are_unavailable() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Unknown,
            Code::Internal,
            Code::Unauthenticated,
            Code::Unimplemented,
            Code::DataLoss,
        ] {
            assert_eq!(classify(&with_info(code)), Upstream::Unavailable, "{code:?} with ErrorInfo");
            assert_eq!(classify(&Status::new(code, "bare")), Upstream::Unavailable, "{code:?}");
        }
        for code in REFUSAL_CODES {
            assert_eq!(classify(&Status::new(code, "bare")), Upstream::Unavailable, "bare {code:?}");
        }
    }

    #[test]
    fn storage_causes_keep_their_error() {
        let cause = StorageCause::from(sqlx::Error::RowNotFound);
        assert!(cause.get().downcast_ref::<sqlx::Error>().is_some());
        assert_eq!(StorageCause::from("corrupt row 7"), StorageCause::from(String::from("corrupt row 7")));
        assert_eq!(cause.to_string(), sqlx::Error::RowNotFound.to_string());
    }

    #[test]
    fn a_lost_conflict_is_aborted_and_retryable_any_other_storage_error_internal() {
        let storage_status = |code| storage("economy.test", &StorageCause::from(crate::db::database_error(code)), &"x");
        for code in ["40001", "40P01"] {
            let status = storage_status(code);
            assert_eq!(status.code(), Code::Aborted, "{code}");
            assert_eq!(reason(&status).as_deref(), Some(STORAGE_CONFLICT));
            assert!(matches!(classify(&status), Upstream::Unavailable), "callers retry it");
        }
        let status = storage_status("23505");
        assert_eq!((status.code(), reason(&status).as_deref()), (Code::Internal, Some(INTERNAL_ERROR)));
    }

    #[test]
    fn a_lost_database_connection_is_unavailable_and_retryable() {
        let status_of = |error: sqlx::Error| storage("economy.test", &StorageCause::from(error), &"x");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let lost = [
            sqlx::Error::Io(reset),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Protocol("unexpected response from SSLRequest".into()),
            crate::db::database_error("57P01"),
            crate::db::database_error("08006"),
        ];
        for error in lost {
            let status = status_of(error);
            assert_eq!((status.code(), reason(&status).as_deref()), (Code::Unavailable, Some(STORAGE_UNAVAILABLE)));
            assert!(matches!(classify(&status), Upstream::Unavailable), "callers retry it");
        }
        let status = status_of(sqlx::Error::RowNotFound);
        assert_eq!((status.code(), reason(&status).as_deref()), (Code::Internal, Some(INTERNAL_ERROR)));
    }

    #[test]
    fn internal_is_opaque() {
        let status = internal("economy.test", &"syntax error near SELECT");
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"));
    }
}
