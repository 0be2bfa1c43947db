//! The access log (docs/operations.md, "Observability"): one line per RPC at `info`,
//! target `economy::access`, written inside the request's span (so a JSON line carries
//! its `trace_id` and `span_id`), with `server`, `method` (the path), `code` (the status
//! name, as docs/errors.md spells it), `reason` (the `ErrorInfo` reason, when the status
//! has one), `duration_ms`, `user_id` (the verified caller, when it is a user) and
//! `request_id` (the `x-request-id` header, when it is a plain token). Nothing else of
//! the request is logged: no metadata, token, code, key or message. `log.access = false`
//! turns it off. Health and reflection requests are not logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt as _;
use tracing_subscriber::registry::{LookupSpan, Registry};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the access log on or off for the process (`log.access`; `crate::telemetry`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether requests are logged: when not, nothing of a request is recorded for it.
pub(super) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The longest `x-request-id` logged, characters.
const MAX_REQUEST_ID: usize = 128;

/// What the access line of one request learns while it runs: the verified user.
#[derive(Debug, Default)]
pub(super) struct Access {
    /// The user id, 0 until known (user ids are positive).
    user_id: AtomicI64,
}

/// Makes `access` the record of `span`'s request, where [`record_user`] finds it.
pub(super) fn attach(span: &tracing::Span, access: &Arc<Access>) {
    span.with_subscriber(|(id, dispatch)| {
        let span = dispatch.downcast_ref::<Registry>().and_then(|registry| registry.span(id));
        if let Some(span) = span {
            span.extensions_mut().insert(access.clone());
        }
    });
}

/// Records `user_id` as the caller of the request being served (the current span or an
/// ancestor carries its record): the kit's identity interceptor and the gateway's
/// authentication call it once the caller is verified. No-op outside a request.
pub fn record_user(user_id: i64) {
    tracing::Span::current().with_subscriber(|(id, dispatch)| {
        let Some(span) = dispatch.downcast_ref::<Registry>().and_then(|registry| registry.span(id)) else { return };
        for span in span.scope() {
            if let Some(access) = span.extensions().get::<Arc<Access>>() {
                access.user_id.store(user_id, Ordering::Relaxed);
                return;
            }
        }
    });
}

/// The `x-request-id` of `headers`, when it is 1 to 128 characters of `[A-Za-z0-9._:-]`
/// (anything else is not logged: it could carry anything).
pub(super) fn request_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("x-request-id")?.to_str().ok()?;
    let plain = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-');
    (!value.is_empty() && value.len() <= MAX_REQUEST_ID && value.bytes().all(plain)).then(|| value.to_owned())
}

/// The `ErrorInfo` reason of the status in `headers` (`grpc-status-details-bin`), if any.
pub(super) fn reason(headers: &http::HeaderMap) -> Option<String> {
    let status = tonic::Status::from_header_map(headers)?;
    status.get_details_error_info().map(|info| info.reason)
}

/// One finished request, as the access line tells it.
pub(super) struct Line<'a> {
    pub server: &'a str,
    pub method: &'a str,
    pub code: Code,
    pub reason: Option<&'a str>,
    pub duration: Duration,
    pub access: &'a Access,
    pub request_id: Option<&'a str>,
}

/// Writes `line` at `info` in the current span, when the access log is on.
pub(super) fn log(line: &Line<'_>) {
    if !enabled() {
        return;
    }
    let user_id = Some(line.access.user_id.load(Ordering::Relaxed)).filter(|id| *id > 0);
    let duration_ms = line.duration.as_micros() as f64 / 1000.0;
    tracing::info!(
        target: "economy::access",
        server = line.server,
        method = line.method,
        code = super::code_name(line.code),
        reason = line.reason,
        duration_ms,
        user_id,
        request_id = line.request_id,
        "rpc finished"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_request_ids_are_logged() {
        let with = |value: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("x-request-id", http::HeaderValue::from_static(value));
            request_id(&headers)
        };
        assert_eq!(with("0190f0a4-2b9c-7d1e.a_b:c").as_deref(), Some("0190f0a4-2b9c-7d1e.a_b:c"));
        assert_eq!(with("Bearer abc"), None, "spaces");
        assert_eq!(with("a=b"), None);
        assert_eq!(with(""), None);
        assert_eq!(request_id(&http::HeaderMap::new()), None);
        let long: &'static str = Box::leak("x".repeat(MAX_REQUEST_ID + 1).into_boxed_str());
        assert_eq!(with(long), None);
    }

    #[test]
    fn the_reason_comes_from_the_status_details() {
        let status = crate::error::status(
            Code::NotFound,
            "economy.ledger",
            "ASSET_NOT_FOUND",
            "no such asset",
            Vec::<(String, String)>::new(),
        );
        let response = status.into_http::<tonic::body::Body>();
        assert_eq!(reason(response.headers()).as_deref(), Some("ASSET_NOT_FOUND"));
        let mut plain = http::HeaderMap::new();
        plain.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(reason(&plain), None);
    }

    #[test]
    fn a_user_is_recorded_on_the_request_span() {
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("grpc.request");
            let access = Arc::new(Access::default());
            attach(&span, &access);
            record_user(7);
            assert_eq!(access.user_id.load(Ordering::Relaxed), 0, "outside the request");
            span.in_scope(|| tracing::info_span!("child").in_scope(|| record_user(42)));
            assert_eq!(access.user_id.load(Ordering::Relaxed), 42);
        });
    }
}
