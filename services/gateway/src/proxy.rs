//! The generic proxy (docs/gateway.md, "Routing"): every routed RPC goes through one pipeline —
//! authenticate, authorize by the method's minimum role, rate-limit and shed load, then
//! forward reads directly and writes through the idempotency records. Server streams
//! (reads) take a stream permit instead of holding an in-flight one, and pass the
//! upstream's messages on one by one (docs/gateway.md, "Streams"). No per-method code:
//! the registry, built from the descriptor set, says what each path is.

use std::collections::HashMap;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use economy_kit::error::{StorageCause, Upstream, classify};
use economy_kit::identity::{Caller, IdentityKey};
use economy_kit::server::ServerLimits;
use economy_kit::time::SharedClock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::uri::PathAndQuery;
use prost_reflect::DynamicMessage;
use prost_reflect::prost::Message;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_stream::{Stream, StreamExt};
use tokio_util::task::TaskTracker;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{ServerStreamingService, UnaryService};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::auth::Authenticator;
use crate::canonical::{fingerprint, redact, reduced};
use crate::codec::BytesCodec;
use crate::config::{GatewayConfig, IdempotencyConfig};
use crate::error::GatewayError;
use crate::policy::Selection;
use crate::registry::{Method, Registry};
use crate::store::{Begin, IdempotencyStore, NewRecord, Resumed, StoredResponse};
use crate::streams::{Guarded, StreamLimits};

/// Longest lease a claim may have (a configuration beyond it is capped): one day.
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// Metadata the client sends: the idempotency key of a write.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Metadata sent upstream and returned: the business event of a write.
pub const BUSINESS_EVENT_ID: &str = "business-event-id";
/// Metadata sent upstream: the business event the service derives its own keys from.
pub const UPSTREAM_BUSINESS_EVENT_ID: &str = "x-business-event-id";
/// Metadata returned: this request's id.
pub const REQUEST_ID: &str = "request-id";
/// Metadata of a replay.
pub const REPLAYED: &str = "idempotent-replayed";
/// Metadata of a replay: the request that produced the stored response.
pub const ORIGINAL_REQUEST_ID: &str = "original-request-id";
/// Metadata of a replay whose `sensitive` fields (a redemption code, …) were not kept:
/// they come back empty.
pub const REDACTED: &str = "idempotent-redacted";
/// Metadata of a replay whose response was too large to keep: the status, the business
/// event and this marker are all that is replayed.
pub const TRUNCATED: &str = "idempotent-truncated";
/// Metadata of a truncated replay: the size of the response that was not kept, bytes.
pub const RESPONSE_BYTES: &str = "idempotent-response-bytes";

/// Everything the pipeline needs, shared by all requests.
pub struct Gateway {
    /// Routed methods.
    pub registry: Registry,
    /// Token verification.
    pub auth: Authenticator,
    /// Signs the caller for upstreams.
    pub identity: IdentityKey,
    /// Idempotency records.
    pub store: IdempotencyStore,
    /// One lazily connected channel per upstream.
    pub upstreams: HashMap<String, Channel>,
    /// Record lifecycle and snapshot limits.
    pub idempotency: IdempotencyConfig,
    /// Deadline of an upstream call.
    pub upstream_timeout: Duration,
    /// How long a claim is valid: the upstream deadline plus the configured margin.
    pub lease: Duration,
    /// The detached work of every request (forward + record), drained on shutdown.
    pub tasks: TaskTracker,
    /// Largest message accepted or returned, bytes.
    pub max_message_bytes: usize,
    /// Source of "now" for records, leases and checks (`GatewayConfig::clock`).
    pub clock: SharedClock,
    /// Open server streams, per user and in all (`gateway.streams`); ends them at shutdown.
    pub streams: StreamLimits,
    limiter: DefaultKeyedRateLimiter<i64>,
    in_flight: Semaphore,
}

impl Gateway {
    /// Assembles the pipeline's state from the gateway's settings (rate limit, in-flight
    /// limit, record lifecycle) and the server limits (upstream deadline, message size).
    pub fn new(
        registry: Registry,
        auth: Authenticator,
        identity: IdentityKey,
        store: IdempotencyStore,
        upstreams: HashMap<String, Channel>,
        config: &GatewayConfig,
        limits: &ServerLimits,
    ) -> Self {
        let per_second = NonZeroU32::new(config.rate_limit_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.rate_limit_burst.max(per_second.get())).unwrap_or(per_second);
        let upstream_timeout = Duration::from_secs(limits.request_timeout_secs).min(MAX_LEASE);
        Self {
            registry,
            auth,
            identity,
            store,
            upstreams,
            idempotency: config.idempotency.clone(),
            upstream_timeout,
            lease: upstream_timeout
                .saturating_add(Duration::from_secs(config.idempotency.lease_margin_secs))
                .min(MAX_LEASE),
            tasks: TaskTracker::new(),
            max_message_bytes: limits.max_message_bytes,
            clock: config.clock.clone(),
            streams: StreamLimits::new(&config.streams),
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            in_flight: Semaphore::new(config.max_in_flight.max(1)),
        }
    }
}

fn ascii(value: &str) -> MetadataValue<tonic::metadata::Ascii> {
    value.parse().unwrap_or_else(|_| MetadataValue::from_static("invalid"))
}

/// The tower service mounted as the router's fallback: any path not served by the
/// gateway itself.
#[derive(Clone)]
pub struct Proxy(pub Arc<Gateway>);

impl<B> tower::Service<http::Request<B>> for Proxy
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let gateway = self.0.clone();
        Box::pin(async move {
            let path = request.uri().path().to_owned();
            let streaming = gateway.registry.method(&path).is_some_and(|method| method.server_streaming);
            let mut grpc = tonic::server::Grpc::new(BytesCodec)
                .max_decoding_message_size(gateway.max_message_bytes)
                .max_encoding_message_size(gateway.max_message_bytes);
            let handler = Handler { path, gateway };
            if streaming {
                return Ok(grpc.server_streaming(StreamHandler(handler), request).await);
            }
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// The messages of a proxied stream, as the upstream encoded them.
pub type MessageStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// A server-streaming path's handler.
struct StreamHandler(Handler);

impl ServerStreamingService<Bytes> for StreamHandler {
    type Response = Bytes;
    type ResponseStream = Guarded<MessageStream>;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Guarded<MessageStream>>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let (gateway, path) = (self.0.gateway.clone(), self.0.path.clone());
        // Not detached, unlike a write: a read stream whose client went away has nothing
        // left to record.
        Box::pin(async move { gateway.open_stream(&path, request).await })
    }
}

struct Handler {
    path: String,
    gateway: Arc<Gateway>,
}

impl UnaryService<Bytes> for Handler {
    type Response = Bytes;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let (gateway, path) = (self.gateway.clone(), self.path.clone());
        // The request's deadline, read here: the detached task below cannot see it.
        let callers_deadline = economy_kit::server::deadline::current();
        // Detached from the caller: a client that goes away (its deadline, a cancel) must
        // not stop a write between its upstream call and the record of its outcome, which
        // would leave the key `processing` until its lease expires. Tracked, so that a
        // shutdown waits for it. The task stays in the request's span (and so its trace).
        let tasks = self.gateway.tasks.clone();
        let handled = async move {
            let handled = gateway.handle(&path, request, callers_deadline).await;
            gateway.count_write(&path, &handled);
            handled
        };
        let task = tasks.spawn(handled.in_current_span());
        Box::pin(async move {
            task.await.unwrap_or_else(|error| Err(GatewayError::Internal(StorageCause::new(error)).into()))
        })
    }
}

impl Gateway {
    /// The pipeline's front door, for proxied and own RPCs alike: authenticates the bearer
    /// token, requires `min_role_level` (`PERMISSION_DENIED` / `ROLE_TOO_LOW`), applies the
    /// per-user rate limit (`RATE_LIMITED`) and takes an in-flight permit (`OVERLOADED`),
    /// held until the request ends.
    pub async fn admit(
        &self,
        metadata: &MetadataMap,
        min_role_level: i32,
    ) -> Result<(Caller, SemaphorePermit<'_>), Status> {
        let caller = self.auth.authenticate(metadata).await?;
        let Caller::User { user_id, role_level } = caller else {
            return Err(GatewayError::internal("a token named a service, not a user").into());
        };
        if role_level < min_role_level {
            return Err(GatewayError::RoleTooLow { min_role_level }.into());
        }
        if self.limiter.check_key(&user_id).is_err() {
            crate::metrics::rate_limited();
            return Err(GatewayError::RateLimited.into());
        }
        let permit = self.in_flight.try_acquire().map_err(|_| {
            crate::metrics::shed();
            GatewayError::Overloaded
        })?;
        Ok((caller, permit))
    }

    /// Counts the end of the RPC at `path` when it is a write
    /// (`economy_gateway_operations_total{operation,outcome}`).
    fn count_write(&self, path: &str, handled: &Result<Response<Bytes>, Status>) {
        let operation = self.registry.method(path).filter(|method| !method.read_only);
        if let Some(operation) = operation.and_then(|method| method.canonical_operation.as_deref()) {
            crate::metrics::operation(operation, handled);
        }
    }

    /// One unary RPC; `callers_deadline` is the request's (docs/operations.md,
    /// "Deadlines"), which bounds a read's upstream call but not a write's.
    async fn handle(
        &self,
        path: &str,
        request: Request<Bytes>,
        callers_deadline: Option<Instant>,
    ) -> Result<Response<Bytes>, Status> {
        let method = self.registry.method(path).ok_or_else(|| GatewayError::NotRouted(path.to_owned()))?;
        let (caller, _permit) = self.admit(request.metadata(), method.min_role_level).await?;
        let user_id = caller.user_id().unwrap_or_default();
        if method.read_only {
            let body = request.into_inner();
            decode(method, &body)?;
            return self.forward(method, &caller, None, body, self.read_deadline(callers_deadline)).await;
        }
        let Some(operation) = method.canonical_operation.as_deref() else {
            return Err(GatewayError::CanonicalOperationNotDefined { method: path.to_owned() }.into());
        };
        let key = idempotency_key(request.metadata())?;
        let body = request.into_inner();
        let message = decode(method, &body)?;
        let fingerprint = fingerprint(self.registry.policies(), user_id, operation, &message);
        let request_id = uuid::Uuid::now_v7().to_string();
        let now = self.clock.now_millis();
        let record = NewRecord {
            user_id,
            key: &key,
            canonical_operation: operation,
            method: path,
            fingerprint: &fingerprint,
            request_id: &request_id,
            now,
            retention_ms: i64::try_from(self.idempotency.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            lease_ms: i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX),
        };
        // The lease runs from before the claim: the forward must end (its deadline) a margin
        // before the lease, however long the claim itself took.
        let claimed = Instant::now();
        let (forward_deadline, lease_ends) = (claimed + self.upstream_timeout.min(self.lease), claimed + self.lease);
        let begin = self.store.begin(&record).await.map_err(GatewayError::from)?;
        let outcome = match &begin {
            Begin::Started { resumed: None, .. } => "new",
            Begin::Started { resumed: Some(_), .. } => "resumed",
            Begin::Replay { .. } => "replayed",
            Begin::Conflict { .. } => "conflict",
            Begin::Processing { .. } => "processing",
        };
        crate::metrics::idempotency_outcome(outcome);
        match begin {
            Begin::Started { business_event_id, resumed } => {
                if resumed == Some(Resumed::Abandoned) {
                    // Its owner died or gave up: this request forwards again with the same
                    // business event, which the service replays if it ran (docs/idempotency.md).
                    tracing::info!(method = %path, %request_id, %business_event_id, "idempotency record taken over past its lease");
                }
                let deadline = Deadline { at: forward_deadline, callers: false };
                let outcome = self.forward(method, &caller, Some(&business_event_id), body, deadline).await;
                let attempt = Attempt { method, user_id, key: &key, request_id: &request_id };
                self.record(&attempt, &outcome, lease_ends).await;
                with_event(outcome, &business_event_id, &request_id)
            }
            Begin::Replay { request_id: original, business_event_id, response } => {
                let redacted = self.registry.policies().reaches(Selection::Sensitive, &method.descriptor.output());
                replay(response, &original, &business_event_id, redacted)
            }
            Begin::Conflict { request_id } => Err(GatewayError::KeyConflict { original_request_id: request_id }.into()),
            Begin::Processing { request_id } => {
                Err(GatewayError::RequestProcessing { original_request_id: request_id }.into())
            }
        }
    }

    /// Opens the server stream at `path` (docs/gateway.md, "Streams"): the front door of a
    /// read (`admit`, its in-flight permit held only while the stream opens), a stream
    /// permit of the caller (`TOO_MANY_STREAMS`), then the upstream's stream, whose opening
    /// (its response headers) is bounded by the upstream timeout (`UPSTREAM_TIMEOUT`) and
    /// whose life is not. Messages pass as the upstream encoded them; an upstream status,
    /// on opening or mid-stream, is passed on as for unary reads.
    async fn open_stream(
        &self,
        path: &str,
        request: Request<Bytes>,
    ) -> Result<Response<Guarded<MessageStream>>, Status> {
        let method = self.registry.method(path).ok_or_else(|| GatewayError::NotRouted(path.to_owned()))?;
        let (caller, _in_flight) = self.admit(request.metadata(), method.min_role_level).await?;
        let body = request.into_inner();
        decode(method, &body)?;
        let permit = self.streams.acquire(caller.user_id().unwrap_or_default())?;
        let (mut grpc, request, upstream_path) = self.upstream_call(method, &caller, None, body)?;
        let open = async move {
            grpc.ready().await.map_err(|_| GatewayError::unavailable(&method.upstream, "not ready"))?;
            grpc.server_streaming(request, upstream_path, BytesCodec).await
        };
        let opened = match tokio::time::timeout(self.upstream_timeout, open).await {
            Ok(result) => result.map_err(|status| passed_on(&method.upstream, status))?,
            Err(_) => return Err(GatewayError::UpstreamTimeout.into()),
        };
        let upstream = method.upstream.clone();
        let messages = opened.into_inner().map(move |message| message.map_err(|status| passed_on(&upstream, status)));
        Ok(Response::new(permit.guard(Box::pin(messages) as MessageStream)))
    }

    /// The deadline of a read's upstream call: the caller's, when it comes before the
    /// gateway's own upstream timeout.
    fn read_deadline(&self, callers: Option<Instant>) -> Deadline {
        let own = Instant::now() + self.upstream_timeout;
        match callers {
            Some(at) if at < own => Deadline { at, callers: true },
            _ => Deadline { at: own, callers: false },
        }
    }

    /// Calls the upstream with the caller's signed identity (and the business event for
    /// writes), ending by `deadline`, which the upstream is given as its `grpc-timeout`;
    /// past it `DEADLINE_EXCEEDED`: `DEADLINE_EXCEEDED` when it was the caller's,
    /// `UPSTREAM_TIMEOUT` when the gateway's.
    async fn forward(
        &self,
        method: &Method,
        caller: &Caller,
        event: Option<&str>,
        body: Bytes,
        deadline: Deadline,
    ) -> Result<Response<Bytes>, Status> {
        let (mut grpc, mut request, path) = self.upstream_call(method, caller, event, body)?;
        request.set_timeout(deadline.at.saturating_duration_since(Instant::now()));
        // The whole forward, readiness included, is bounded: that bound is what makes a
        // claim past its lease provably abandoned.
        let call = async move {
            grpc.ready().await.map_err(|_| GatewayError::unavailable(&method.upstream, "not ready"))?;
            grpc.unary(request, path, BytesCodec).await
        };
        match tokio::time::timeout_at(deadline.at.into(), call).await {
            Ok(result) => result
                .map(|response| Response::new(response.into_inner()))
                .map_err(|status| passed_on(&method.upstream, status)),
            Err(_) if deadline.callers => Err(economy_kit::server::deadline::exceeded(crate::DOMAIN)),
            Err(_) => Err(GatewayError::UpstreamTimeout.into()),
        }
    }

    /// The client of `method`'s upstream, the request to send it (`body` with the caller's
    /// signed identity, the business event of a write and the current trace context: this
    /// request's span, child of the client's `traceparent`; client metadata is never
    /// forwarded) and the path. `UPSTREAM_UNAVAILABLE` when the upstream is not configured.
    fn upstream_call(
        &self,
        method: &Method,
        caller: &Caller,
        event: Option<&str>,
        body: Bytes,
    ) -> Result<(tonic::client::Grpc<Channel>, Request<Bytes>, PathAndQuery), Status> {
        let channel = self
            .upstreams
            .get(&method.upstream)
            .cloned()
            .ok_or_else(|| GatewayError::unavailable(&method.upstream, "not configured"))?;
        let mut request = Request::new(body);
        self.identity.attach(caller, request.metadata_mut());
        economy_kit::telemetry::inject(request.metadata_mut());
        if let Some(event) = event {
            request.metadata_mut().insert(UPSTREAM_BUSINESS_EVENT_ID, ascii(event));
        }
        let grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        let path = PathAndQuery::try_from(method.path.as_str())
            .map_err(|error| GatewayError::Internal(StorageCause::new(error)))?;
        Ok((grpc, request, path))
    }

    /// Stores a deterministic outcome for replay, or marks the record failed so the key
    /// may be retried. A failed write is retried with backoff until `lease_ends`; past it a
    /// retry of the request takes the record over, so giving up loses no outcome.
    async fn record(&self, attempt: &Attempt<'_>, outcome: &Result<Response<Bytes>, Status>, lease_ends: Instant) {
        let write = self.outcome_write(attempt.method, outcome);
        let once = || async {
            match &write {
                OutcomeWrite::Complete(snapshot) => {
                    let (user_id, key, request_id) = (attempt.user_id, attempt.key, attempt.request_id);
                    self.store.complete(user_id, key, request_id, snapshot.clone(), self.clock.now_millis()).await
                }
                OutcomeWrite::Fail(reason) => {
                    self.store
                        .fail(attempt.user_id, attempt.key, attempt.request_id, reason, self.clock.now_millis())
                        .await
                }
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_secs(1))
            .with_jitter()
            .without_max_times();
        let retried = once.retry(backoff).notify(|error: &sqlx::Error, after: Duration| {
            tracing::warn!(%error, retry_in_ms = after.as_millis() as u64, "idempotency record write failed; retrying");
        });
        let path = &attempt.method.path;
        match tokio::time::timeout_at(lease_ends.into(), retried).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => self.moved_on(attempt).await,
            Ok(Err(error)) => tracing::error!(%error, method = %path, "idempotency record not updated"),
            Err(_) => tracing::error!(
                method = %path,
                "idempotency record not updated within its lease; a retry of the key takes it over"
            ),
        }
    }

    /// Says why `attempt`'s record took no outcome: an earlier try of the same write
    /// committed but its reply was lost (nothing to do), or a retry took the record over.
    async fn moved_on(&self, attempt: &Attempt<'_>) {
        let path = &attempt.method.path;
        match self.store.get(attempt.user_id, attempt.key).await {
            Ok(Some(record)) if record.request_id == attempt.request_id => {
                tracing::debug!(method = %path, status = %record.status, "idempotency record already updated");
            }
            _ => tracing::info!(method = %path, "idempotency record taken over before its outcome was stored"),
        }
    }

    /// What to store of `outcome`: deterministic answers for replay, anything else as a
    /// failure that frees the key.
    fn outcome_write(&self, method: &Method, outcome: &Result<Response<Bytes>, Status>) -> OutcomeWrite {
        match outcome {
            Ok(response) => OutcomeWrite::Complete(self.snapshot(method, response.get_ref())),
            // A business answer carries ErrorInfo; a bare status comes from transport or
            // limits (e.g. an oversized response) and may succeed on retry.
            Err(status) if is_deterministic(status) => {
                let details = Some(status.details().to_vec());
                let size = status.message().len() + status.details().len();
                let mut snapshot = StoredResponse {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                    body: None,
                    details,
                    bytes: 0,
                    truncated: false,
                };
                self.limit_snapshot(&mut snapshot, size, method);
                OutcomeWrite::Complete(snapshot)
            }
            Err(status) => OutcomeWrite::Fail(format!("{:?}", status.code())),
        }
    }

    /// The stored form of an OK response: `sensitive` fields redacted, size-limited.
    fn snapshot(&self, method: &Method, body: &Bytes) -> StoredResponse {
        let output = method.descriptor.output();
        let stored = if self.registry.policies().reaches(Selection::Sensitive, &output) {
            DynamicMessage::decode(output, body.clone())
                .map(|message| redact(self.registry.policies(), &message).encode_to_vec())
                .unwrap_or_default()
        } else {
            body.to_vec()
        };
        let size = stored.len();
        let mut snapshot = StoredResponse {
            code: 0,
            message: String::new(),
            body: Some(stored.clone()),
            details: None,
            bytes: 0,
            truncated: false,
        };
        self.limit_snapshot(&mut snapshot, size, method);
        if snapshot.truncated {
            snapshot.body = self.reduced(method, stored);
        }
        snapshot
    }

    /// The reduced form of a stored response too large to keep (`canonical::reduced`:
    /// ids and other scalars), when that fits the limit.
    fn reduced(&self, method: &Method, stored: Vec<u8>) -> Option<Vec<u8>> {
        let message = DynamicMessage::decode(method.descriptor.output(), stored.as_slice()).ok()?;
        let reduced = reduced(&message).encode_to_vec();
        (reduced.len() <= self.idempotency.max_snapshot_bytes).then_some(reduced)
    }

    fn limit_snapshot(&self, snapshot: &mut StoredResponse, size: usize, method: &Method) {
        snapshot.bytes = i64::try_from(size).unwrap_or(i64::MAX);
        crate::metrics::snapshot(size, size > self.idempotency.warn_snapshot_bytes);
        if size > self.idempotency.warn_snapshot_bytes {
            tracing::warn!(size, method = %method.path, "large idempotency snapshot");
        }
        if size > self.idempotency.max_snapshot_bytes {
            snapshot.body = None;
            snapshot.details = None;
            snapshot.message.clear();
            snapshot.truncated = true;
        }
    }
}

/// When an upstream call must end, and whether that is the caller's deadline.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    callers: bool,
}

/// One attempt at a write: whose record it owns.
struct Attempt<'a> {
    method: &'a Method,
    user_id: i64,
    key: &'a str,
    request_id: &'a str,
}

/// The record write that ends an attempt.
enum OutcomeWrite {
    /// Store this outcome for replay.
    Complete(StoredResponse),
    /// Free the key, with this reason (the status code).
    Fail(String),
}

/// An upstream's status as the gateway passes it on: as it is, except a connection that
/// failed (the channel connects lazily: a refused connection surfaces as a bare
/// `UNAVAILABLE` without details), which becomes `UPSTREAM_UNAVAILABLE` naming `upstream`.
fn passed_on(upstream: &str, status: Status) -> Status {
    if status.code() == Code::Unavailable && status.details().is_empty() {
        return GatewayError::unavailable(upstream, "connection refused").into();
    }
    status
}

/// `body` decoded as `method`'s input; `INVALID_ARGUMENT` / `MALFORMED_REQUEST` (no field
/// paths, nothing forwarded) when it does not decode, reads and writes alike.
fn decode(method: &Method, body: &Bytes) -> Result<DynamicMessage, Status> {
    DynamicMessage::decode(method.descriptor.input(), body.clone()).map_err(|_| GatewayError::MalformedRequest.into())
}

/// Whether `status` is a deterministic business answer, stored and replayed: a refusal
/// (`economy_kit::error::classify`: an `ErrorInfo` and a business code) other than
/// `PERMISSION_DENIED`, which a role change can turn around.
fn is_deterministic(status: &Status) -> bool {
    matches!(classify(status), Upstream::Refused(refusal) if refusal.code != Code::PermissionDenied)
}

/// The `idempotency-key` metadata: a UUID, optionally prefixed `idem_`; normalized to the
/// lowercase hyphenated UUID.
fn idempotency_key(metadata: &MetadataMap) -> Result<String, GatewayError> {
    let value = metadata.get(IDEMPOTENCY_KEY).ok_or(GatewayError::MissingIdempotencyKey)?;
    normalized_key(value.to_str().unwrap_or_default()).ok_or(GatewayError::InvalidIdempotencyKey)
}

/// An idempotency key as records store it: the lowercase hyphenated UUID of `value` (a
/// UUID, optionally prefixed `idem_`), or `None` when it is not one.
pub fn normalized_key(value: &str) -> Option<String> {
    let uuid = value.strip_prefix("idem_").unwrap_or(value);
    uuid::Uuid::try_parse(uuid).ok().map(|uuid| uuid.to_string())
}

fn with_event(
    outcome: Result<Response<Bytes>, Status>,
    event: &str,
    request_id: &str,
) -> Result<Response<Bytes>, Status> {
    let stamp = |metadata: &mut MetadataMap| {
        metadata.insert(BUSINESS_EVENT_ID, ascii(event));
        metadata.insert(REQUEST_ID, ascii(request_id));
    };
    match outcome {
        Ok(mut response) => {
            stamp(response.metadata_mut());
            Ok(response)
        }
        Err(mut status) => {
            stamp(status.metadata_mut());
            Err(status)
        }
    }
}

/// The stored outcome, as first returned, marked as a replay. `sensitive` fields were
/// stored empty: `redacted` says the method's response may hold one, and the replay says
/// so (`idempotent-redacted: true`). A success whose snapshot was too large to keep
/// replays as a success, never as an error: its reduced body (ids and other scalars, see
/// `canonical::reduced`) and `idempotent-truncated: true`.
fn replay(
    stored: StoredResponse,
    original_request_id: &str,
    event: &str,
    redacted: bool,
) -> Result<Response<Bytes>, Status> {
    let stamp = |metadata: &mut MetadataMap| {
        metadata.insert(REPLAYED, MetadataValue::from_static("true"));
        metadata.insert(ORIGINAL_REQUEST_ID, ascii(original_request_id));
        metadata.insert(BUSINESS_EVENT_ID, ascii(event));
        if stored.truncated {
            metadata.insert(TRUNCATED, MetadataValue::from_static("true"));
            metadata.insert(RESPONSE_BYTES, ascii(&stored.bytes.to_string()));
        }
    };
    let mut outcome = if stored.code == 0 {
        let mut response = Response::new(Bytes::from(stored.body.clone().unwrap_or_default()));
        if redacted {
            response.metadata_mut().insert(REDACTED, MetadataValue::from_static("true"));
        }
        Ok(response)
    } else if stored.truncated {
        Err(GatewayError::ResponseTruncated {
            code: Code::from_i32(stored.code),
            business_event_id: event.to_owned(),
            response_bytes: stored.bytes,
        }
        .into())
    } else {
        Err(Status::with_details(
            Code::from_i32(stored.code),
            stored.message.clone(),
            Bytes::from(stored.details.clone().unwrap_or_default()),
        ))
    };
    match &mut outcome {
        Ok(response) => stamp(response.metadata_mut()),
        Err(status) => stamp(status.metadata_mut()),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_reason(value: Option<&str>) -> Option<String> {
        let mut metadata = MetadataMap::new();
        if let Some(value) = value {
            metadata.insert(IDEMPOTENCY_KEY, value.parse().expect("ascii"));
        }
        idempotency_key(&metadata).err().and_then(|error| economy_kit::error::reason(&Status::from(error)))
    }

    #[test]
    fn idempotency_keys_are_uuids_with_an_optional_prefix() {
        let uuid = "0190F0A4-2B9C-7D1E-8F00-0123456789AB";
        let mut metadata = MetadataMap::new();
        metadata.insert(IDEMPOTENCY_KEY, format!("idem_{uuid}").parse().expect("ascii"));
        assert_eq!(idempotency_key(&metadata).expect("key"), uuid.to_lowercase());
        assert_eq!(key_reason(None).as_deref(), Some("MISSING_IDEMPOTENCY_KEY"));
        assert_eq!(key_reason(Some("order-42")).as_deref(), Some("INVALID_IDEMPOTENCY_KEY"));
        assert_eq!(key_reason(Some("idem_")).as_deref(), Some("INVALID_IDEMPOTENCY_KEY"));
    }

    #[test]
    fn only_business_answers_are_stored() {
        let answer = |code| {
            economy_kit::error::status(
                code,
                "economy.items",
                economy_kit::reasons::ITEM_NOT_AVAILABLE,
                "no",
                [("k", "v")],
            )
        };
        assert!(is_deterministic(&answer(Code::FailedPrecondition)));
        assert!(is_deterministic(&answer(Code::AlreadyExists)));
        assert!(!is_deterministic(&Status::failed_precondition("bare: no ErrorInfo")));
        for transient in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Internal,
            Code::Unknown,
            Code::Unauthenticated,
            Code::PermissionDenied,
        ] {
            assert!(!is_deterministic(&answer(transient)), "{transient:?}");
        }
    }
}
