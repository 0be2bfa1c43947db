//! What operators and the BFF rely on: health of the gateway and of each upstream,
//! server reflection, and gRPC-web over HTTP/1.1 with CORS.

use bytes::Bytes;
use economy_kit::identity::roles;
use economy_proto::ledger::v1 as pb;
use http_body_util::{BodyExt, Full};
use prost_reflect::prost::Message;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use crate::common::*;

const LEDGER: &str = "economy.ledger.v1.LedgerService";

async fn health(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> Option<ServingStatus> {
    let response = client.check(HealthCheckRequest { service: service.into() }).await.ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

#[tokio::test]
async fn health_reports_the_gateway_and_an_upstream_going_down() {
    let mut stack = stack().await;
    let mut client = HealthClient::new(channel(&stack.gateway_url()).await);
    assert_eq!(health(&mut client, "").await, Some(ServingStatus::Serving));
    assert_eq!(health(&mut client, economy_gateway::SERVICE_NAME).await, Some(ServingStatus::Serving));
    eventually("the ledger reported serving", || async {
        health(&mut client.clone(), LEDGER).await == Some(ServingStatus::Serving)
    })
    .await;

    stack.stop(Service::Ledger).await;
    eventually("the ledger reported not serving", || async {
        health(&mut client.clone(), LEDGER).await == Some(ServingStatus::NotServing)
    })
    .await;
    assert_eq!(health(&mut client, economy_gateway::SERVICE_NAME).await, Some(ServingStatus::Serving));
}

async fn reflect(channel: tonic::transport::Channel, request: MessageRequest) -> MessageResponse {
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut client = ServerReflectionClient::new(channel);
    let mut answers = client.server_reflection_info(tokio_stream::once(request)).await.unwrap().into_inner();
    let answer: ServerReflectionResponse = answers.message().await.unwrap().unwrap();
    answer.message_response.unwrap()
}

#[tokio::test]
async fn reflection_lists_the_routed_services() {
    let stack = stack().await;
    let channel = channel(&stack.gateway_url()).await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(channel.clone(), MessageRequest::ListServices(String::new())).await
    else {
        panic!("a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    assert!(names.iter().any(|name| name == LEDGER), "{names:?}");
    assert!(names.iter().any(|name| name == "grpc.health.v1.Health"), "{names:?}");
    let MessageResponse::FileDescriptorResponse(files) =
        reflect(channel, MessageRequest::FileContainingSymbol(format!("{LEDGER}.AdjustBalance"))).await
    else {
        panic!("a file descriptor")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

/// grpcurl decodes an error's details (`type.googleapis.com/google.rpc.ErrorInfo`) with
/// the types reflection serves (docs/errors.md).
#[tokio::test]
async fn reflection_serves_the_error_detail_types() {
    let stack = stack().await;
    let channel = channel(&stack.gateway_url()).await;
    for (symbol, message) in [("google.rpc.ErrorInfo", "ErrorInfo"), ("google.rpc.BadRequest", "BadRequest")] {
        let MessageResponse::FileDescriptorResponse(files) =
            reflect(channel.clone(), MessageRequest::FileContainingSymbol(symbol.into())).await
        else {
            panic!("{symbol}: no file descriptor")
        };
        let file = prost_reflect::prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
            .expect("a file descriptor");
        assert_eq!(file.package(), "google.rpc");
        assert!(file.message_type.iter().any(|found| found.name() == message), "{symbol} in {}", file.name());
    }
}

/// One request over a fresh HTTP/1.1 connection; the response head and whole body.
pub async fn http1(stack: &Stack, request: http::Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    let stream = tokio::net::TcpStream::connect(stack.gateway_addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let (parts, body) = sender.send_request(request).await.unwrap().into_parts();
    assert_eq!(parts.version, http::Version::HTTP_11);
    (parts, body.collect().await.unwrap().to_bytes())
}

/// A gRPC-web call as admin: the HTTP head, the data frames and the status (from the
/// trailer frame, or from the head of a trailers-only answer) as `grpc-status:N` lines.
async fn grpc_web(
    stack: &Stack,
    method: &str,
    message: Vec<u8>,
    key: Option<&str>,
) -> (http::response::Parts, Vec<Bytes>, String) {
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&message);
    let mut request = http::Request::post(format!("http://{}/{LEDGER}/{method}", stack.gateway_addr()))
        .header("host", stack.gateway_addr().to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "https://bff.example")
        .header("authorization", bearer(ADMIN, roles::ADMIN));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let (head, mut body) = http1(stack, request.body(Full::new(Bytes::from(body))).unwrap()).await;
    assert_eq!(head.status, http::StatusCode::OK);
    assert_eq!(head.headers["content-type"], "application/grpc-web+proto");
    assert!(head.headers.contains_key("access-control-allow-origin"), "{head:?}");
    let (mut data, mut trailers) = (Vec::new(), String::new());
    while !body.is_empty() {
        let (flag, len) = (body[0], u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize);
        let frame = body.split_to(5 + len).split_off(5);
        match flag {
            0 => data.push(frame),
            0x80 => trailers = String::from_utf8(frame.to_vec()).unwrap(),
            other => panic!("unexpected frame flag {other}"),
        }
    }
    if let Some(status) = head.headers.get("grpc-status") {
        trailers.push_str(&format!("grpc-status:{}", status.to_str().unwrap()));
    }
    (head, data, trailers.to_lowercase())
}

#[tokio::test]
async fn grpc_web_over_http1_reads_and_writes() {
    let stack = stack_with(|gateway, _| gateway.cors.allowed_origins = vec!["https://bff.example".into()]).await;
    stack.admin_with_points().await;
    let (_, data, trailers) = grpc_web(&stack, "ListAssets", pb::ListAssetsRequest {}.encode_to_vec(), None).await;
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let assets = pb::ListAssetsResponse::decode(data[0].clone()).unwrap().assets;
    assert_eq!(assets.iter().map(|asset| asset.code.as_str()).collect::<Vec<_>>(), ["POINTS"]);

    let key = new_key();
    let write = adjust(USER, 12).encode_to_vec();
    let (_, first, trailers) = grpc_web(&stack, "AdjustBalance", write.clone(), Some(&key)).await;
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let (head, replay, _) = grpc_web(&stack, "AdjustBalance", write, Some(&key)).await;
    assert_eq!(head.headers["idempotent-replayed"], "true");
    assert_eq!(replay, first);
    let (_, _, missing_key) = grpc_web(&stack, "AdjustBalance", adjust(USER, 1).encode_to_vec(), None).await;
    assert!(missing_key.contains("grpc-status:3"), "{missing_key}");
    assert_eq!(points(&mut stack.admin().await, USER).await, 12);
}

#[tokio::test]
async fn reflection_off_is_not_served() {
    let stack = stack_with(|gateway, _| gateway.reflection = economy_gateway::safety::Reflection::Off).await;
    let mut client = ServerReflectionClient::new(channel(&stack.gateway_url()).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let status = client.server_reflection_info(tokio_stream::iter([request])).await.expect_err("not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}

/// A service's own reflection lists only what it serves (and health), never another
/// service of the API it would answer `UNIMPLEMENTED` for.
#[tokio::test]
async fn a_service_reflects_only_its_own_service() {
    let stack = stack().await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(channel(&stack.ledger_url()).await, MessageRequest::ListServices(String::new())).await
    else {
        panic!("a service list")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    names.sort();
    assert_eq!(names, ["economy.ledger.v1.LedgerService", "grpc.health.v1.Health"]);
}
