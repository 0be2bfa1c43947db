//! Input that is wrong in shape: blank required text and unknown enum numbers are refused
//! with `VALIDATION_FAILED`, and request bytes that are no message at all are answered
//! with a status, never a panic.

use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes};
use economy_kit::error::violated_fields;
use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as pb;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Status};

use crate::common::*;

#[tokio::test]
async fn blank_required_text_is_refused_like_empty_text() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let item = grant(&mut admin, 2, "sword").await;
    for blank in ["", " ", "\t\n \u{3000}"] {
        let named = pb::ItemTemplate { display_name: blank.into(), ..template("gem", pb::ItemKind::Other, 0, false) };
        let status = assert_error(define(&mut admin, named).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["template.display_name"]);
        let revoke = pb::RevokeItemRequest { reason: blank.into(), ..revoke_request(&item.id) };
        let status = assert_error(admin.revoke_item(revoke).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["reason"]);
    }
    assert_eq!(get(&mut admin, &item.id).await.status(), pb::ItemStatus::Available);
    let missing = admin.get_template(pb::GetTemplateRequest { code: "gem".into() }).await;
    assert_error(missing, Code::NotFound, "TEMPLATE_NOT_FOUND");
}

#[tokio::test]
async fn unknown_enum_numbers_are_refused() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    for statuses in [vec![0], vec![6], vec![1, 99], vec![-1]] {
        let list = pb::ListItemsRequest { owner_user_id: 2, statuses, ..Default::default() };
        let status = assert_error(admin.list_items(list).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["statuses"]);
    }
    let grouped = pb::ListItemsRequest { owner_user_id: 2, statuses: vec![42], grouped: true, ..Default::default() };
    assert_error(admin.list_items(grouped).await, Code::InvalidArgument, "VALIDATION_FAILED");
}

/// Sends and receives message bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Every method of `service` (full name) in the proto descriptor set.
fn methods(service: &str) -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(economy_proto::FILE_DESCRIPTOR_SET).unwrap();
    let methods: Vec<String> = set
        .file
        .iter()
        .flat_map(|file| file.service.iter().map(move |found| (file.package(), found)))
        .filter(|(package, found)| format!("{package}.{}", found.name()) == service)
        .flat_map(|(_, found)| found.method.iter().map(|method| method.name().to_owned()))
        .collect();
    assert!(methods.len() > 10, "{methods:?}");
    methods
}

/// Byte strings that are not the message a method expects: random bytes (a fixed seed),
/// broken varints and lengths, invalid UTF-8, wrong wire types, deep nesting.
fn malformed() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = |length: usize| {
        (0..length)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                state.to_be_bytes()[0]
            })
            .collect::<Vec<u8>>()
    };
    let mut payloads: Vec<Vec<u8>> = (1..=24).map(|length| random(length * 3)).collect();
    payloads.extend([
        vec![0xFF; 16],
        vec![0x0A, 0x02, 0xC3, 0x28],
        vec![0x12, 0x02, 0xC3, 0x28],
        vec![0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        vec![0x0A, 0x7F, 0x01],
        vec![0x12, 0x80, 0x80, 0x80, 0x80, 0x10],
        vec![0x08, 0x01, 0x10, 0x01, 0x18, 0x01, 0x20, 0x01, 0x28, 0x01],
        vec![0x0D, 0x01, 0x02, 0x03],
        vec![0x07],
    ]);
    let mut nested = Vec::new();
    for _ in 0..200 {
        let mut outer = vec![0x12];
        let mut length = nested.len();
        while length >= 0x80 {
            outer.push(u8::try_from(length & 0x7F).unwrap() | 0x80);
            length >>= 7;
        }
        outer.push(u8::try_from(length).unwrap());
        outer.extend(&nested);
        nested = outer;
    }
    payloads.push(nested);
    payloads
}

#[tokio::test]
async fn malformed_request_bytes_get_a_status_on_every_method() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let service = "economy.items.v1.ItemService";
    let signer = app.key.signer(Caller::user(ADMIN, roles::ADMIN));
    let mut grpc = tonic::client::Grpc::new(InterceptedService::new(app.channel().await, signer));
    for method in methods(service) {
        for payload in malformed() {
            grpc.ready().await.unwrap();
            let path = PathAndQuery::from_str(&format!("/{service}/{method}")).unwrap();
            let answer = grpc.unary(tonic::Request::new(Bytes::from(payload.clone())), path, RawCodec).await;
            let Err(status) = answer else { continue };
            // A message that does not decode is INVALID_ARGUMENT / MALFORMED_REQUEST;
            // anything else must be the service's own answer, never a lost call.
            let reason = economy_kit::error::reason(&status);
            assert!(
                reason.as_deref().is_some_and(|reason| reason != "INTERNAL_ERROR"),
                "{method} {payload:02x?}: {status:?}"
            );
            assert_ne!(status.code(), Code::Internal, "{method} {payload:02x?}: {status:?}");
        }
    }
    // The server is still serving, and the noise defined no template.
    let templates = admin.list_templates(pb::ListTemplatesRequest {}).await.unwrap().into_inner().templates;
    assert_eq!(templates.len(), 3);
}
