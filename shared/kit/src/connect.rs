//! The Connect protocol beside gRPC and gRPC-web (docs/gateway.md, "Protocols"): a unary
//! Connect call (`POST /<package>.<Service>/<Method>` with `Content-Type:
//! application/proto` or `application/json`, over HTTP/1.1 or HTTP/2) is translated into
//! the gRPC call it stands for and sent down the same pipeline as every other request —
//! authentication, idempotency, canonical operations and routing see plain gRPC — and the
//! gRPC answer is translated back: the message as the body (JSON when the request was
//! JSON), or a Connect error `{"code", "message", "details"}` whose details carry the
//! status's `google.rpc.ErrorInfo` / `BadRequest` in binary, base64 without padding.
//!
//! JSON is converted with the method's descriptors (`prost-reflect`, the proto3 JSON
//! mapping); a method the descriptor pool does not know answers `unimplemented`.
//! Streaming Connect calls, compressed bodies and unary GET are not served. Any other
//! request passes through untouched.

use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tonic::Code;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::reasons;

/// Adds the Connect protocol to a gRPC service ([`ConnectService`]).
#[derive(Debug, Clone)]
pub struct ConnectLayer {
    pool: Arc<DescriptorPool>,
    max_message_bytes: usize,
    domain: &'static str,
}

impl ConnectLayer {
    /// Connect calls of the methods in `pool`, with request bodies up to
    /// `max_message_bytes` (larger ones answer `resource_exhausted`); a body that is not
    /// the method's request answers `invalid_argument` / `MALFORMED_REQUEST` in `domain`.
    pub fn new(pool: DescriptorPool, max_message_bytes: usize, domain: &'static str) -> Self {
        Self { pool: Arc::new(pool), max_message_bytes, domain }
    }
}

impl<S> Layer<S> for ConnectLayer {
    type Service = ConnectService<S>;

    fn layer(&self, inner: S) -> ConnectService<S> {
        ConnectService { inner, layer: self.clone() }
    }
}

/// A gRPC service that also answers unary Connect calls (module docs).
#[derive(Debug, Clone)]
pub struct ConnectService<S> {
    inner: S,
    layer: ConnectLayer,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ConnectService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service polled ready is the one that serves; a clone takes its place.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let Some(codec) = Codec::of(&request) else {
            let future = inner.call(request.map(Body::new));
            return Box::pin(async move { Ok(future.await?.map(Body::new)) });
        };
        let layer = self.layer.clone();
        Box::pin(async move {
            let call = match UnaryCall::read(request, codec, &layer).await {
                Ok(call) => call,
                Err(error) => return Ok(error.into_response()),
            };
            let response = inner.call(call.grpc_request()).await?;
            Ok(call.answer(response).await)
        })
    }
}

/// How a Connect call encodes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Proto,
    Json,
}

impl Codec {
    /// The codec of a unary Connect POST; `None` for anything else.
    fn of<B>(request: &Request<B>) -> Option<Self> {
        if request.method() != Method::POST {
            return None;
        }
        let content_type = request.headers().get(CONTENT_TYPE)?.to_str().ok()?;
        let media_type = content_type.split(';').next()?.trim();
        match media_type.to_ascii_lowercase().as_str() {
            "application/proto" => Some(Self::Proto),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Proto => "application/proto",
            Self::Json => "application/json",
        }
    }
}

/// A Connect call read and validated, ready to go down the pipeline as gRPC.
struct UnaryCall {
    codec: Codec,
    method: MethodDescriptor,
    parts: http::request::Parts,
    message: Bytes,
}

impl UnaryCall {
    /// Reads the body (at most the layer's limit) and converts it to the method's binary
    /// request message.
    async fn read<B>(request: Request<B>, codec: Codec, layer: &ConnectLayer) -> Result<Self, ConnectError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let (method, limit) = (method(&layer.pool, parts.uri.path())?, layer.max_message_bytes);
        if parts.headers.get(CONTENT_ENCODING).is_some_and(|encoding| encoding != "identity") {
            return Err(ConnectError::new(Code::Unimplemented, "compressed Connect requests are not served"));
        }
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let message = format!("the request body is larger than {limit} bytes or could not be read");
                return Err(ConnectError::new(Code::ResourceExhausted, &message));
            }
        };
        let message = match codec {
            Codec::Proto => body,
            Codec::Json => json_to_binary(&method, &body, layer.domain)?,
        };
        Ok(Self { codec, method, parts, message })
    }

    /// The gRPC request: the caller's headers (authorization, idempotency key, trace
    /// context, …), `connect-timeout-ms` as `grpc-timeout`, the message in one frame.
    fn grpc_request(&self) -> Request<Body> {
        let mut frame = BytesMut::with_capacity(5 + self.message.len());
        frame.put_u8(0);
        frame.put_u32(u32::try_from(self.message.len()).unwrap_or(u32::MAX));
        frame.put_slice(&self.message);
        let mut request = Request::new(Body::new(Full::new(frame.freeze())));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.parts.uri.clone();
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = grpc_headers(&self.parts.headers);
        *request.extensions_mut() = self.parts.extensions.clone();
        request
    }

    /// The Connect answer to the gRPC `response`.
    async fn answer<B>(self, response: Response<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = response.into_parts();
        let collected = match body.collect().await {
            Ok(collected) => collected,
            Err(_) => return ConnectError::new(Code::Unavailable, "the answer was cut off").into_response(),
        };
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = tonic::Status::from_header_map(&trailers)
            .or_else(|| tonic::Status::from_header_map(&parts.headers))
            .unwrap_or_else(|| tonic::Status::unknown("the answer carried no grpc-status"));
        let metadata = connect_metadata(&parts.headers, &trailers);
        let result = match status.code() {
            Code::Ok => self.success(&collected.to_bytes()),
            _ => Err(ConnectError::from_status(&status)),
        };
        let mut response = result.unwrap_or_else(ConnectError::into_response);
        for (name, value) in metadata {
            response.headers_mut().append(name, value);
        }
        response
    }

    /// `200` with the response message of the first (only) frame of `frames`.
    fn success(&self, frames: &Bytes) -> Result<Response<Body>, ConnectError> {
        let message = first_frame(frames)?;
        let body = match self.codec {
            Codec::Proto => message,
            Codec::Json => binary_to_json(&self.method, message)?,
        };
        let mut response = Response::new(Body::new(Full::new(body)));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(self.codec.content_type()));
        Ok(response)
    }
}

/// The method of `path` (`/<package>.<Service>/<Method>`) in `pool`.
fn method(pool: &DescriptorPool, path: &str) -> Result<MethodDescriptor, ConnectError> {
    let unknown = || ConnectError::new(Code::Unimplemented, &format!("{path} is not a method of this API"));
    let (service, method) = path.trim_start_matches('/').split_once('/').ok_or_else(unknown)?;
    let service = pool.get_service_by_name(service).ok_or_else(unknown)?;
    let method = service.methods().find(|candidate| candidate.name() == method).ok_or_else(unknown)?;
    if method.is_server_streaming() || method.is_client_streaming() {
        let message =
            format!("{path} is a stream: call it with gRPC or gRPC-web (the Connect protocol serves unary calls)");
        return Err(ConnectError::new(Code::Unimplemented, &message));
    }
    Ok(method)
}

fn json_to_binary(method: &MethodDescriptor, body: &[u8], domain: &str) -> Result<Bytes, ConnectError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize(method.input(), &mut deserializer)
        .and_then(|message| deserializer.end().map(|()| message))
        .map_err(|error| {
            ConnectError::malformed(domain, &format!("the JSON is not a {}: {error}", method.input().name()))
        })?;
    Ok(message.encode_to_vec().into())
}

fn binary_to_json(method: &MethodDescriptor, message: Bytes) -> Result<Bytes, ConnectError> {
    let message = DynamicMessage::decode(method.output(), message)
        .map_err(|_| ConnectError::new(Code::Internal, "the answer is not the method's response message"))?;
    let json =
        serde_json::to_vec(&message).map_err(|_| ConnectError::new(Code::Internal, "the answer has no JSON form"))?;
    Ok(json.into())
}

/// The message of the first gRPC frame of `frames` (uncompressed).
fn first_frame(frames: &Bytes) -> Result<Bytes, ConnectError> {
    let cut = || ConnectError::new(Code::Internal, "the answer is not one gRPC message");
    let header = frames.get(..5).ok_or_else(cut)?;
    if header[0] != 0 {
        return Err(ConnectError::new(Code::Internal, "the answer is compressed"));
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let end = 5usize.checked_add(length).filter(|end| *end <= frames.len()).ok_or_else(cut)?;
    Ok(frames.slice(5..end))
}

/// Headers that describe the Connect framing, not the call: not passed on.
fn is_connect_framing(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(name, "content-type" | "content-length" | "content-encoding" | "accept-encoding" | "te")
        || name.starts_with("connect-")
}

/// The gRPC request headers for a Connect call's `headers`.
fn grpc_headers(headers: &HeaderMap) -> HeaderMap {
    let mut grpc: HeaderMap =
        headers.iter().filter(|(name, _)| !is_connect_framing(name)).map(|(n, v)| (n.clone(), v.clone())).collect();
    grpc.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    grpc.insert(http::header::TE, HeaderValue::from_static("trailers"));
    let timeout = headers.get("connect-timeout-ms").and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    // gRPC timeouts have at most 8 digits.
    if let Some(millis) = timeout.filter(|millis| *millis <= 99_999_999)
        && let Ok(value) = HeaderValue::from_str(&format!("{millis}m"))
    {
        grpc.insert("grpc-timeout", value);
    }
    grpc
}

/// The answer's metadata for a Connect response: headers as they are, trailers as
/// `trailer-<name>`, without the gRPC framing and status headers.
fn connect_metadata(headers: &HeaderMap, trailers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let keep = |name: &HeaderName| !name.as_str().starts_with("grpc-") && !is_connect_framing(name);
    let leading = headers.iter().filter(|(name, _)| keep(name)).map(|(n, v)| (n.clone(), v.clone()));
    let trailing = trailers.iter().filter(|(name, _)| keep(name)).filter_map(|(name, value)| {
        let prefixed = HeaderName::from_bytes(format!("trailer-{name}").as_bytes()).ok()?;
        Some((prefixed, value.clone()))
    });
    leading.chain(trailing).collect()
}

/// A Connect error: its code, message and the binary details of the gRPC status.
#[derive(Debug)]
struct ConnectError {
    code: Code,
    message: String,
    details: Vec<prost_types::Any>,
}

impl ConnectError {
    fn new(code: Code, message: &str) -> Self {
        Self { code, message: message.to_owned(), details: Vec::new() }
    }

    /// `invalid_argument` with `ErrorInfo.reason = MALFORMED_REQUEST` (docs/errors.md).
    fn malformed(domain: &str, message: &str) -> Self {
        let status = crate::error::status(
            Code::InvalidArgument,
            domain,
            reasons::MALFORMED_REQUEST,
            message,
            Vec::<(String, String)>::new(),
        );
        Self::from_status(&status)
    }

    fn from_status(status: &tonic::Status) -> Self {
        let details = tonic_types::pb::Status::decode(status.details()).map(|rpc| rpc.details).unwrap_or_default();
        Self { code: status.code(), message: status.message().to_owned(), details }
    }

    fn into_response(self) -> Response<Body> {
        let details: Vec<serde_json::Value> = self
            .details
            .iter()
            .map(|any| {
                let kind = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
                serde_json::json!({ "type": kind, "value": STANDARD_NO_PAD.encode(&any.value) })
            })
            .collect();
        let mut body = serde_json::json!({ "code": code_name(self.code), "message": self.message });
        if !details.is_empty() {
            body["details"] = serde_json::Value::Array(details);
        }
        let mut response = Response::new(Body::new(Full::new(Bytes::from(body.to_string()))));
        *response.status_mut() = http_status(self.code);
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// The Connect name of a gRPC code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a Connect error with `code` (the Connect protocol's table).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use economy_proto::ledger::v1 as pb;
    use http_body_util::StreamBody;
    use http_body_util::combinators::UnsyncBoxBody;
    use hyper::body::Frame;
    use tower::ServiceExt as _;

    use super::*;

    const GET_BALANCE: &str = "/economy.ledger.v1.LedgerService/GetBalance";

    type Answer = Response<UnsyncBoxBody<Bytes, Infallible>>;

    fn layer() -> ConnectLayer {
        let pool = DescriptorPool::decode(economy_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        ConnectLayer::new(pool, 1024, "economy.test")
    }

    fn framed(message: &[u8]) -> Bytes {
        let mut frame = BytesMut::new();
        frame.put_u8(0);
        frame.put_u32(message.len() as u32);
        frame.put_slice(message);
        frame.freeze()
    }

    /// A gRPC answer: leading headers, the message (if any) and `status` in trailers.
    fn grpc_answer(message: Option<Vec<u8>>, status: &tonic::Status) -> Answer {
        let mut trailers = status.clone().into_http::<()>().into_parts().0.headers;
        trailers.remove(CONTENT_TYPE);
        trailers.insert("x-trailing", HeaderValue::from_static("t"));
        let frames = message.map(|message| Ok(Frame::data(framed(&message)))).into_iter();
        let stream = futures_util::stream::iter(frames.chain([Ok(Frame::trailers(trailers))]));
        let mut response = Response::new(UnsyncBoxBody::new(StreamBody::new(stream)));
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        response
    }

    fn connect_request(content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
        Request::builder()
            .method(Method::POST)
            .uri(GET_BALANCE)
            .version(Version::HTTP_11)
            .header(CONTENT_TYPE, content_type)
            .header("authorization", "Bearer t")
            .header("connect-protocol-version", "1")
            .header("connect-timeout-ms", "1500")
            .body(Full::new(body.into()))
            .expect("request")
    }

    async fn body_of(response: Response<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, body.collect().await.expect("body").to_bytes())
    }

    fn balance_answer() -> Vec<u8> {
        let balance = pb::Balance { asset_code: "POINTS".into(), available: 7, frozen: 1, total: 8, account: None };
        pb::GetBalanceResponse { balance: Some(balance) }.encode_to_vec()
    }

    #[tokio::test]
    async fn a_json_call_goes_down_as_grpc_and_comes_back_as_json() {
        let inner = tower::service_fn(|request: Request<Body>| async move {
            assert_eq!(request.version(), Version::HTTP_2);
            assert_eq!(request.headers()[CONTENT_TYPE], "application/grpc");
            assert_eq!(request.headers()["authorization"], "Bearer t");
            assert_eq!(request.headers()["grpc-timeout"], "1500m");
            assert!(request.headers().get("connect-protocol-version").is_none());
            let frames = request.into_body().collect().await.expect("body").to_bytes();
            let sent = pb::GetBalanceRequest::decode(first_frame(&frames).expect("one frame")).expect("message");
            assert_eq!(sent.asset_code, "POINTS");
            Ok::<_, Infallible>(grpc_answer(Some(balance_answer()), &tonic::Status::ok("")))
        });
        let json = r#"{"account": {"userId": "2"}, "assetCode": "POINTS"}"#;
        let response = layer().layer(inner).oneshot(connect_request("application/json", json)).await.expect("call");
        let (status, headers, body) = body_of(response).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers["idempotent-replayed"], "true");
        assert_eq!(headers["trailer-x-trailing"], "t");
        assert!(headers.get("grpc-status").is_none());
        let answer: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["balance"]["available"], "7", "int64 as a JSON string: {answer}");
    }

    #[tokio::test]
    async fn a_binary_call_answers_the_binary_message() {
        let inner = tower::service_fn(|_: Request<Body>| async move {
            Ok::<_, Infallible>(grpc_answer(Some(balance_answer()), &tonic::Status::ok("")))
        });
        let request = pb::GetBalanceRequest { account: None, asset_code: "POINTS".into(), as_of: None }.encode_to_vec();
        let response = layer().layer(inner).oneshot(connect_request("application/proto", request)).await.expect("call");
        let (status, headers, body) = body_of(response).await;
        assert_eq!((status, &headers[CONTENT_TYPE]), (StatusCode::OK, &HeaderValue::from_static("application/proto")));
        assert_eq!(body.as_ref(), balance_answer().as_slice());
    }

    #[tokio::test]
    async fn a_refusal_is_a_connect_error_with_its_error_info() {
        let inner = tower::service_fn(|_: Request<Body>| async move {
            let refusal = crate::error::status(
                Code::FailedPrecondition,
                "economy.ledger",
                "INSUFFICIENT_BALANCE",
                "not enough",
                [("asset_code", "POINTS")],
            );
            Ok::<_, Infallible>(grpc_answer(None, &refusal))
        });
        let response = layer().layer(inner).oneshot(connect_request("application/json", "{}")).await.expect("call");
        let (status, _, body) = body_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            (error["code"].as_str(), error["message"].as_str()),
            (Some("failed_precondition"), Some("not enough"))
        );
        assert_eq!(error["details"][0]["type"], "google.rpc.ErrorInfo");
        let value = STANDARD_NO_PAD.decode(error["details"][0]["value"].as_str().expect("value")).expect("base64");
        let info = tonic_types::pb::ErrorInfo::decode(value.as_slice()).expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.metadata["asset_code"].as_str()), ("INSUFFICIENT_BALANCE", "POINTS"));
    }

    #[tokio::test]
    async fn bad_json_unknown_methods_streams_and_large_bodies_never_reach_the_service() {
        let inner = tower::service_fn(|_: Request<Body>| async move {
            panic!("must not be called");
            #[allow(unreachable_code)]
            Ok::<Answer, Infallible>(grpc_answer(None, &tonic::Status::ok("")))
        });
        let service = layer().layer(inner);
        let malformed = service.clone().oneshot(connect_request("application/json", r#"{"assetCode": 5"#)).await;
        let (status, _, body) = body_of(malformed.expect("call")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&body).contains("invalid_argument"), "{body:?}");
        let error: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        let value = STANDARD_NO_PAD.decode(error["details"][0]["value"].as_str().expect("value")).expect("base64");
        assert_eq!(tonic_types::pb::ErrorInfo::decode(value.as_slice()).expect("info").reason, "MALFORMED_REQUEST");

        let mut unknown = connect_request("application/json", "{}");
        *unknown.uri_mut() = "/economy.ledger.v1.LedgerService/Nope".parse().expect("uri");
        let (status, _, _) = body_of(service.clone().oneshot(unknown).await.expect("call")).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);

        let mut stream = connect_request("application/json", "{}");
        *stream.uri_mut() = "/economy.ledger.v1.LedgerService/WatchEntries".parse().expect("uri");
        let (status, _, body) = body_of(service.clone().oneshot(stream).await.expect("call")).await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
        assert!(String::from_utf8_lossy(&body).contains("is a stream"), "{body:?}");

        let large = connect_request("application/proto", vec![0_u8; 2048]);
        let (status, _, body) = body_of(service.oneshot(large).await.expect("call")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:?}");
    }

    #[tokio::test]
    async fn other_requests_pass_through_untouched() {
        let inner = tower::service_fn(|request: Request<Body>| async move {
            assert_eq!(request.headers()[CONTENT_TYPE], "application/grpc-web+proto");
            Ok::<_, Infallible>(grpc_answer(None, &tonic::Status::ok("")))
        });
        let request = connect_request("application/grpc-web+proto", Bytes::new());
        let response = layer().layer(inner).oneshot(request).await.expect("call");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
    }
}
