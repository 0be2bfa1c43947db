//! The error model (DESIGN.md §4): `tonic::Status` carrying `ErrorInfo { reason, domain,
//! metadata }`, plus `BadRequest` field violations for validation failures. Storage and
//! other unexpected errors are logged and returned as an opaque `INTERNAL`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Reason of every validation failure; the `BadRequest` detail lists the fields.
pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";
/// Reason of an opaque internal error.
pub const INTERNAL_ERROR: &str = "INTERNAL_ERROR";

/// A status with an `ErrorInfo` detail.
///
/// `domain` is `economy.<svc>`; `reason` a stable UPPER_SNAKE string; `metadata` extra
/// key/value context (ids, amounts) for clients.
pub fn status<I, K, V>(code: Code, domain: &str, reason: &str, message: impl Into<String>, metadata: I) -> Status
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let metadata: HashMap<String, String> =
        metadata.into_iter().map(|(key, value)| (key.into(), value.into())).collect();
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, domain, metadata))
}

/// An `INVALID_ARGUMENT` status with a specific `reason` and one `BadRequest` violation
/// naming `field` (a field path or a metadata key) and what it must look like.
pub fn invalid_field(domain: &str, reason: &str, field: &str, description: &str) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, domain, HashMap::new());
    details.set_bad_request(vec![FieldViolation::new(field, description)]);
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {description}"), details)
}

/// `ErrorInfo.reason` of a request whose bytes do not decode as its message.
pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_reason_and_domain() {
        let status = status(Code::FailedPrecondition, "economy.test", "SOMETHING", "msg", [("id", "7")]);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("SOMETHING", "economy.test"));
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
    fn internal_is_opaque() {
        let status = internal("economy.test", &"syntax error near SELECT");
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"));
    }
}
