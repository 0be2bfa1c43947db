//! The helpers every test crate shares, written once: the stack on fresh databases
//! ([`TestStack`]), identities and signed clients, bearer tokens, idempotency keys,
//! error assertions (code and `ErrorInfo.reason`, docs/errors.md), polling, and calls of
//! raw message bytes.
//!
//! Test-only: every crate takes it as a dev-dependency, so none of it reaches a service
//! binary (it also turns on economy-kit's `testing` feature, [`TestDatabase`]).

mod grpc_web;
mod malformed;
mod server_timed;
mod stack;
pub mod tls;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use economy_kit::identity::{IdentityConfig, IdentityKey};
use economy_kit::tls::ClientTls;
use tonic::codegen::{Body, StdError};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt;

pub use economy_gateway::codec::BytesCodec;
pub use economy_kit::testing::{POSTGRES_URL_ENV, TestDatabase};
pub use economy_stack::{RunningStack, Service, StackBuilder, StackConfig};
pub use grpc_web::{GrpcWebStream, grpc_web_stream};
pub use malformed::{assert_malformed_bytes_answered, malformed_payloads, methods_of};
pub use server_timed::{ServerTimed, server_timed};
pub use stack::{TestStack, TestStackBuilder, test_stack};

/// The identity secret of every test stack and directly called service.
pub const IDENTITY_SECRET: &str = "economy-tests-identity-secret-0123456789";
/// The HS256 secret the gateway of every test stack verifies tokens with.
pub const JWT_SECRET: &str = "economy-tests-jwt-secret-0123456789";
/// Lifetime of the bearer tokens minted here, seconds.
const TOKEN_TTL_SECS: u64 = 3600;

/// The key of [`IDENTITY_SECRET`]: sign callers of a service called directly with
/// `identity().signer(Caller::user(1, roles::ADMIN))`.
pub fn identity() -> IdentityKey {
    IdentityKey::new(&IdentityConfig { secret: IDENTITY_SECRET.into(), ..IdentityConfig::default() })
        .expect("the test identity secret is valid")
}

/// `Bearer <HS256 token>` for `user_id` with `role_level`, signed with [`JWT_SECRET`]:
/// the value of `authorization` the test gateway accepts.
pub fn bearer(user_id: i64, role_level: i32) -> String {
    let token =
        economy_gateway::auth::mint_hs256(JWT_SECRET, user_id, role_level, TOKEN_TTL_SECS).expect("a token is minted");
    format!("Bearer {token}")
}

/// Sets `authorization` (any value, or none) on every request.
#[derive(Debug, Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// Sends `authorization: <value>` (any text, valid or not).
    pub fn new(value: &str) -> Self {
        Self(Some(value.parse().expect("an ASCII metadata value")))
    }

    /// Sends a valid token of `user_id` with `role_level` ([`bearer`]).
    pub fn user(user_id: i64, role_level: i32) -> Self {
        Self::new(&bearer(user_id, role_level))
    }

    /// Sends no `authorization`.
    pub fn none() -> Self {
        Self(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connected channel to `url` (`http://host:port`).
pub async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).expect("a valid URL").connect().await.expect("connected")
}

/// A channel to `url` (`https://host:port`) connected with the internal client's `tls`
/// settings; the error when the handshake (or connection) fails.
pub async fn tls_channel(url: &str, tls: &ClientTls) -> Result<Channel, tonic::transport::Error> {
    economy_kit::tls::endpoint(url, tls, "test.internal_tls").expect("a valid endpoint").connect().await
}

/// A fresh idempotency key (a UUIDv7).
pub fn new_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `message` with metadata `idempotency-key: key` (the gateway's key of a write).
pub fn keyed<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("idempotency-key", key.parse().expect("an ASCII key"));
    request
}

/// `message` with a fresh `idempotency-key` ([`new_key`]).
pub fn with_new_key<T>(message: T) -> Request<T> {
    keyed(message, &new_key())
}

/// Asserts the gRPC code and `ErrorInfo.reason` of a failed call; returns the status.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, reason: &str) -> Status {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(economy_kit::error::reason(&status).as_deref(), Some(reason), "{status:?}");
    status
}

/// The `ErrorInfo.reason` of a call that must fail (the whole status when it has none).
#[track_caller]
pub fn reason<T: std::fmt::Debug>(result: Result<T, Status>) -> String {
    reason_of(&result.expect_err("the call should fail"))
}

/// The `ErrorInfo.reason` of `status` (the whole status when it has none).
pub fn reason_of(status: &Status) -> String {
    economy_kit::error::reason(status).unwrap_or_else(|| format!("{status:?}"))
}

/// The `ErrorInfo.metadata` of `status` (empty without `ErrorInfo`).
pub fn error_info(status: &Status) -> HashMap<String, String> {
    status.get_details_error_info().map(|info| info.metadata).unwrap_or_default()
}

/// The value of metadata entry `key`, if present.
pub fn meta(metadata: &MetadataMap, key: &str) -> Option<String> {
    metadata.get(key).map(|value| value.to_str().expect("ASCII metadata").to_owned())
}

/// How long [`eventually`] waits.
pub const EVENTUALLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `check` every 50 ms until it holds (asynchronous work: outboxes, jobs);
/// fails the test after [`EVENTUALLY_TIMEOUT`] naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + EVENTUALLY_TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request of raw message bytes with metadata `authorization` and, when given,
/// `idempotency-key`.
pub fn raw_request(body: Vec<u8>, authorization: &str, key: Option<&str>) -> Request<Bytes> {
    let mut request = Request::new(Bytes::from(body));
    request.metadata_mut().insert("authorization", authorization.parse().expect("ASCII"));
    if let Some(key) = key {
        request.metadata_mut().insert("idempotency-key", key.parse().expect("ASCII"));
    }
    request
}

/// One unary call of method `path` (`/package.Service/Method`) over `service` (a channel,
/// or one with an interceptor) with the request bytes as they are; the response bytes
/// exactly as received.
pub async fn raw_call<T>(service: T, path: &str, request: Request<Bytes>) -> Result<Response<Bytes>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(service);
    grpc.ready().await.map_err(|error| Status::unavailable(error.into().to_string()))?;
    grpc.unary(request, path.parse().expect("a method path"), BytesCodec).await
}

/// Declares a test crate's own stack type, `pub struct $name(TestStack)`, that derefs to
/// [`TestStack`] so the crate adds its helpers beside the testkit's:
/// `economy_testkit::stack_type!(/// docs; Stack);`.
#[macro_export]
macro_rules! stack_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        pub struct $name(pub $crate::TestStack);

        impl ::std::ops::Deref for $name {
            type Target = $crate::TestStack;

            fn deref(&self) -> &$crate::TestStack {
                &self.0
            }
        }

        impl ::std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $crate::TestStack {
                &mut self.0
            }
        }
    };
}
