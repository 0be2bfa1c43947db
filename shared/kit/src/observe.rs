//! The tower layer in front of every gRPC server (docs/operations.md, "Observability"), inside gRPC-web
//! translation so it always sees gRPC: one span per request, child of the caller's W3C
//! trace context (`traceparent` metadata), and the RPC metrics, named and labelled as
//! go-grpc-prometheus names them so that stock gRPC dashboards work.
//!
//! Metrics (labels: `server` = the name the server reports health under; `grpc_service`,
//! `grpc_method` and `grpc_type` (`unary`, `client_stream`, `server_stream`,
//! `bidi_stream`) from the descriptor sets (`rpcs`); `grpc_code` = the status as
//! go-grpc-prometheus spells it, `OK`, `InvalidArgument`, … (`metric_code`)):
//! - `grpc_server_started_total{server,grpc_service,grpc_method,grpc_type}`: requests
//!   received;
//! - `grpc_server_handled_total{…,grpc_code}`: requests finished;
//! - `grpc_server_handling_seconds{server,grpc_service,grpc_method,grpc_type}`: histogram,
//!   from the request to the end of its response body (100 µs to 60 s buckets).
//!
//! The status is read from the response headers (trailers-only answers) or trailers.
//! `Canceled` counts requests that ended before their status was sent (caller gone); a
//! passed deadline is answered, and counted, `DeadlineExceeded` (`server::deadline`,
//! inside this layer). Paths outside the descriptor sets are counted under
//! `grpc_service` and `grpc_method` `unknown`, so arbitrary paths cannot grow the label
//! set. Health and reflection requests are counted but not traced.
//!
//! Each other request also writes one access line at `info` when it ends (`access`;
//! `log.access`).

mod access;
mod rpcs;

pub use access::record_user;
pub use access::set_enabled as set_access_log;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::Code;
use tracing::Instrument;

/// `tower::Layer` adding the request span and RPC metrics to a server named `server`.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    server: Arc<str>,
}

impl ObserveLayer {
    /// The layer of the server that reports health as `server` (e.g.
    /// `economy.ledger.v1.LedgerService`); that name is the `server` label.
    pub fn new(server: &str) -> Self {
        Self { server: server.into() }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, server: self.server.clone() }
    }
}

/// The service `ObserveLayer` wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    server: Arc<str>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("", path));
        let span = if is_operator_service(service) {
            tracing::Span::none()
        } else {
            let span = tracing::info_span!(
                "grpc.request",
                otel.name = path,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
                rpc.grpc.status_code = tracing::field::Empty,
                economy.server = &*self.server,
            );
            crate::telemetry::set_parent(&span, request.headers());
            span
        };
        let mut completion = Completion::start(self.server.clone(), rpcs::rpc(path), span.clone());
        if !span.is_none() && access::enabled() {
            completion.access = Some(AccessRecord::new(&span, path, request.headers()));
        }
        let domain = error_domain(service);
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let mut response = future.await?;
                if is_decode_failure(response.headers()) {
                    response = crate::error::malformed_request(&domain).into_http();
                }
                completion.record_status(response.headers());
                Ok(response.map(|body| tonic::body::Body::new(ObservedBody { inner: body, completion })))
            }
            .instrument(span),
        )
    }
}

/// A generated server's answer to request bytes that do not decode: `INTERNAL` with
/// prost's message, which names field paths. It becomes `INVALID_ARGUMENT` /
/// `MALFORMED_REQUEST`, as the gateway answers the same bytes.
fn is_decode_failure(headers: &http::HeaderMap) -> bool {
    const PREFIXES: [&[u8]; 2] = [b"failed to decode Protobuf message", b"failed%20to%20decode%20Protobuf%20message"];
    status_of(headers) == Some(Code::Internal)
        && headers
            .get("grpc-message")
            .is_some_and(|message| PREFIXES.iter().any(|prefix| message.as_bytes().starts_with(prefix)))
}

/// `ErrorInfo.domain` of a service's errors: `economy.<svc>` from `economy.<svc>.v1.X`.
fn error_domain(service: &str) -> String {
    let mut segments = service.split('.');
    match (segments.next(), segments.next()) {
        (Some("economy"), Some(name)) => format!("economy.{name}"),
        _ => "economy".to_owned(),
    }
}

/// Health and reflection: counted, never traced (probes would flood the traces).
fn is_operator_service(service: &str) -> bool {
    service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.")
}

/// The `grpc-status` of a header or trailer map.
fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|value| Code::from_bytes(value.as_bytes()))
}

/// Records one request when dropped: with the body's end, or earlier when the request was
/// abandoned.
struct Completion {
    server: Arc<str>,
    rpc: &'static rpcs::Rpc,
    start: Instant,
    span: tracing::Span,
    code: Option<Code>,
    /// What the access line needs; `None` for health and reflection.
    access: Option<AccessRecord>,
}

/// The access line's part of a request (`access`).
struct AccessRecord {
    access: Arc<access::Access>,
    method: String,
    request_id: Option<String>,
    reason: Option<String>,
}

impl AccessRecord {
    /// The longest path logged, characters.
    const MAX_METHOD: usize = 256;

    /// The record of the request to `path` with `headers`, attached to its `span`.
    fn new(span: &tracing::Span, path: &str, headers: &http::HeaderMap) -> Self {
        let access = Arc::new(access::Access::default());
        access::attach(span, &access);
        let method = path.chars().take(Self::MAX_METHOD).collect();
        Self { access, method, request_id: access::request_id(headers), reason: None }
    }
}

impl Completion {
    /// A request to `rpc` that starts now: counted in `grpc_server_started_total`.
    fn start(server: Arc<str>, rpc: &'static rpcs::Rpc, span: tracing::Span) -> Self {
        let completion = Self { server, rpc, start: Instant::now(), span, code: None, access: None };
        metrics::counter!("grpc_server_started_total", &completion.labels()).increment(1);
        completion
    }

    /// Takes the status of a header or trailer map that has one, and its `ErrorInfo`
    /// reason for the access line.
    fn record_status(&mut self, headers: &http::HeaderMap) {
        let Some(code) = status_of(headers) else { return };
        self.code = Some(code);
        if let Some(record) = &mut self.access
            && code != Code::Ok
        {
            record.reason = access::reason(headers);
        }
    }

    /// The access line of the finished request, in its span.
    fn log_access(&self, code: Code) {
        let Some(record) = &self.access else { return };
        let line = access::Line {
            server: &self.server,
            method: &record.method,
            code,
            reason: record.reason.as_deref(),
            duration: self.start.elapsed(),
            access: &record.access,
            request_id: record.request_id.as_deref(),
        };
        self.span.in_scope(|| access::log(&line));
    }

    /// `server`, `grpc_service`, `grpc_method`, `grpc_type`.
    fn labels(&self) -> [(&'static str, String); 4] {
        [
            ("server", self.server.to_string()),
            ("grpc_service", self.rpc.service.clone()),
            ("grpc_method", self.rpc.method.clone()),
            ("grpc_type", self.rpc.kind.to_owned()),
        ]
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(Code::Cancelled);
        let labels = self.labels();
        metrics::histogram!("grpc_server_handling_seconds", &labels).record(self.start.elapsed().as_secs_f64());
        let [server, service, method, kind] = labels;
        let handled = [server, service, method, kind, ("grpc_code", metric_code(code).to_owned())];
        metrics::counter!("grpc_server_handled_total", &handled).increment(1);
        self.span.record("rpc.grpc.status_code", code as i64);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        self.log_access(code);
    }
}

/// Codes that mean the server failed (OpenTelemetry's gRPC server conventions).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// The canonical upper-case name of a gRPC code (`OK`, `INVALID_ARGUMENT`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The `grpc_code` label of `code`, as go-grpc-prometheus spells it (Go's `codes.Code`
/// names: `OK`, `Canceled`, `InvalidArgument`, …), so that stock gRPC dashboards and alerts
/// match it.
pub fn metric_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The response body, watched for its trailers; records the request when it ends.
struct ObservedBody {
    inner: tonic::body::Body,
    completion: Completion,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.completion.record_status(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => this.completion.code = this.completion.code.or(Some(Code::Unknown)),
            Poll::Ready(None) => this.completion.code = this.completion.code.or(Some(Code::Unknown)),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_canonical_names() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::from_bytes(b"14")), "UNAVAILABLE");
    }

    #[test]
    fn metric_codes_are_spelled_as_go_grpc_prometheus_does() {
        assert_eq!(metric_code(Code::Ok), "OK");
        assert_eq!(metric_code(Code::Cancelled), "Canceled");
        assert_eq!(metric_code(Code::InvalidArgument), "InvalidArgument");
        assert_eq!(metric_code(Code::from_bytes(b"14")), "Unavailable");
    }

    #[test]
    fn status_comes_from_grpc_status() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_of(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(status_of(&headers), Some(Code::NotFound));
    }
}
