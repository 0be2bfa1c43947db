//! The deadline of every request (docs/operations.md, "Deadlines"): the caller's
//! `grpc-timeout`, capped by the server's `request_timeout_secs`. When it passes the
//! request's future is dropped — which stops its database work ([`crate::db::long_read`])
//! — and the caller gets `DEADLINE_EXCEEDED` (reason `DEADLINE_EXCEEDED`). tonic's own
//! server timeout answered `CANCELLED: Timeout expired` instead, so servers do not set it.
//!
//! While the request's future runs, [`current`] gives its deadline (a task-local: work
//! spawned from the request must take it along itself).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use crate::reasons;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the request whose future is running, `None` outside a request.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Whether the deadline of the request whose future is running has passed.
pub fn passed() -> bool {
    current().is_some_and(|deadline| Instant::now() >= deadline)
}

/// The answer to a request whose deadline passed, in `domain` (`economy.<svc>`).
pub fn exceeded(domain: &str) -> Status {
    crate::error::status(
        Code::DeadlineExceeded,
        domain,
        reasons::DEADLINE_EXCEEDED,
        "the request's deadline passed before it finished",
        std::iter::empty::<(String, String)>(),
    )
}

/// `tower::Layer` giving each request its deadline (module docs); `request_timeout` caps
/// the caller's, `domain` is the one of its `DEADLINE_EXCEEDED` answers.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    request_timeout: Duration,
    domain: Arc<str>,
}

impl DeadlineLayer {
    /// The layer of the server named `server` (e.g. `economy.ledger.v1.LedgerService`,
    /// whose answers are in the domain `economy.ledger`).
    pub fn new(server: &str, request_timeout: Duration) -> Self {
        let domain = server.split('.').take(2).collect::<Vec<_>>().join(".");
        Self { request_timeout, domain: domain.into() }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadlined<S>;

    fn layer(&self, inner: S) -> Deadlined<S> {
        Deadlined { inner, layer: self.clone() }
    }
}

/// The service [`DeadlineLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct Deadlined<S> {
    inner: S,
    layer: DeadlineLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Deadlined<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Taken before the inner call, so it never falls after tonic's own reading of the
        // caller's `grpc-timeout` (whose expiry would answer `CANCELLED`).
        let timeout = grpc_timeout(request.headers())
            .map_or(self.layer.request_timeout, |caller| caller.min(self.layer.request_timeout));
        let deadline = Instant::now() + timeout;
        let domain = self.layer.domain.clone();
        let answer = DEADLINE.scope(deadline, self.inner.call(request));
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), answer).await {
                Ok(answer) => answer,
                Err(_) => Ok(exceeded(&domain).into_http()),
            }
        })
    }
}

/// The caller's `grpc-timeout` header: at most 8 digits and a unit (`H`, `M`, `S`, `m`,
/// `u`, `n`; gRPC over HTTP/2). `None` when absent or malformed.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().expect("header value"));
        grpc_timeout(&headers)
    }

    #[tokio::test]
    async fn a_statement_its_deadline_stopped_answers_deadline_exceeded() {
        use crate::error::{StorageCause, storage};
        let answer = |code| storage("economy.test", &StorageCause::from(crate::db::database_error(code)), &"x");
        let past = Instant::now().checked_sub(Duration::from_millis(1)).unwrap_or_else(Instant::now);
        for code in ["57014", "9"] {
            let stopped = DEADLINE.scope(past, async { answer(code) }).await;
            assert_eq!(stopped.code(), Code::DeadlineExceeded, "{code}");
            assert_eq!(crate::error::reason(&stopped).as_deref(), Some(reasons::DEADLINE_EXCEEDED));
            // Without a passed deadline, a cancelled statement is no deadline's doing.
            let later = Instant::now() + Duration::from_secs(60);
            assert_eq!(DEADLINE.scope(later, async { answer(code) }).await.code(), Code::Internal, "{code}");
            assert_eq!(answer(code).code(), Code::Internal, "{code}");
        }
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(parsed("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parsed("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parsed("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parsed("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parsed("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parsed("7n"), Some(Duration::from_nanos(7)));
        for malformed in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(parsed(malformed), None, "{malformed:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn answers_are_in_the_servers_domain() {
        let layer = DeadlineLayer::new("economy.ledger.v1.LedgerService", Duration::from_secs(1));
        assert_eq!(&*layer.domain, "economy.ledger");
    }

    /// The status and `ErrorInfo.reason` a layered service answers `request` with, and the
    /// deadline its inner service saw; the inner service never answers.
    async fn answer(request_timeout: Duration, request: http::Request<()>) -> (Code, Option<String>, Option<Instant>) {
        use tower::{Layer, ServiceExt};
        let (seen, mut saw) = tokio::sync::mpsc::unbounded_channel();
        let inner = tower::service_fn(move |_: http::Request<()>| {
            let seen = seen.clone();
            async move {
                let _ = seen.send(current());
                std::future::pending::<Result<http::Response<tonic::body::Body>, std::convert::Infallible>>().await
            }
        });
        let layer = DeadlineLayer::new("economy.ledger.v1.LedgerService", request_timeout);
        let response = layer.layer(inner).oneshot(request).await.expect("an answer");
        let status = Status::from_header_map(response.headers()).expect("a trailers-only status");
        (status.code(), crate::error::reason(&status), saw.recv().await.flatten())
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_answered_deadline_exceeded() {
        let started = Instant::now();
        let (code, reason, deadline) = answer(Duration::from_millis(50), http::Request::new(())).await;
        assert_eq!((code, reason.as_deref()), (Code::DeadlineExceeded, Some(reasons::DEADLINE_EXCEEDED)));
        assert!(deadline.is_some_and(|deadline| deadline >= started + Duration::from_millis(50)), "{deadline:?}");

        let mut request = http::Request::new(());
        request.headers_mut().insert("grpc-timeout", "20m".parse().expect("header value"));
        let (code, _, deadline) = answer(Duration::from_secs(3600), request).await;
        assert_eq!(code, Code::DeadlineExceeded);
        let capped = Instant::now() + Duration::from_secs(60);
        assert!(
            deadline.is_some_and(|deadline| deadline < capped),
            "the caller's deadline, not the server's: {deadline:?}"
        );
    }

    #[tokio::test]
    async fn the_deadline_is_known_inside_the_request_only() {
        assert_eq!(current(), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(DEADLINE.scope(deadline, async { current() }).await, Some(deadline));
    }
}
