//! Request bytes that are no message at all, sent to every method of a service: each
//! call must be answered with the service's own status, never a panic or a lost call.

use bytes::Bytes;
use prost::Message;
use tonic::codegen::{Body, StdError};
use tonic::{Code, Request};

use crate::raw_call;

/// Every method name of `service` (full name, `economy.ledger.v1.LedgerService`) in the
/// proto descriptor set; panics when it has fewer than ten (a wrong name).
pub fn methods_of(service: &str) -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(economy_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let methods: Vec<String> = set
        .file
        .iter()
        .flat_map(|file| file.service.iter().map(move |found| (file.package(), found)))
        .filter(|(package, found)| format!("{package}.{}", found.name()) == service)
        .flat_map(|(_, found)| found.method.iter().map(|method| method.name().to_owned()))
        .collect();
    assert!(methods.len() > 10, "{service}: {methods:?}");
    methods
}

/// Byte strings that are not the message a method expects: random bytes (a fixed seed),
/// broken varints and lengths, invalid UTF-8, wrong wire types, deep nesting.
pub fn malformed_payloads() -> Vec<Vec<u8>> {
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
            outer.push(u8::try_from(length & 0x7F).expect("seven bits") | 0x80);
            length >>= 7;
        }
        outer.push(u8::try_from(length).expect("seven bits"));
        outer.extend(&nested);
        nested = outer;
    }
    payloads.push(nested);
    payloads
}

/// Sends every [`malformed_payloads`] to every method of `service` over `client` (a
/// channel, with the interceptor that authenticates the caller) and asserts each failure
/// is the service's own answer: an `ErrorInfo.reason` other than `INTERNAL_ERROR` and a
/// code other than INTERNAL. A payload that happens to decode may succeed.
pub async fn assert_malformed_bytes_answered<T>(client: T, service: &str)
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    for method in methods_of(service) {
        for payload in malformed_payloads() {
            let path = format!("/{service}/{method}");
            let answer = raw_call(client.clone(), &path, Request::new(Bytes::from(payload.clone()))).await;
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
}
