//! The `google.rpc` detail messages of `proto/google/rpc/error_details.proto` are the ones
//! every service attaches with tonic-types (docs/errors.md): same type names in the
//! descriptor set (so reflection clients such as grpcurl decode them) and the same wire
//! format both ways.

use std::collections::HashMap;

use economy_proto::google::rpc::{BadRequest, ErrorInfo, bad_request::FieldViolation};
use prost::Message;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

/// Every message's full name in the encoded descriptor set.
fn message_names() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(economy_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    set.file
        .iter()
        .flat_map(|file| file.message_type.iter().map(move |message| format!("{}.{}", file.package(), message.name())))
        .collect()
}

#[test]
fn the_descriptor_set_holds_the_detail_types() {
    let names = message_names();
    for wanted in ["google.rpc.ErrorInfo", "google.rpc.BadRequest"] {
        assert!(names.iter().any(|name| name == wanted), "{wanted} missing from {names:?}");
    }
}

#[test]
fn details_written_by_tonic_types_decode_as_the_vendored_messages() {
    let metadata = HashMap::from([("asset_code".to_owned(), "POINTS".to_owned())]);
    let mut details = ErrorDetails::with_error_info("INSUFFICIENT_BALANCE", "economy.ledger", metadata.clone());
    details.add_bad_request_violation("amount", "must be positive");
    let status = tonic::Status::with_error_details(Code::FailedPrecondition, "insufficient", details);

    let encoded = tonic_types::pb::Status::decode(status.details()).expect("google.rpc.Status");
    let any = |type_url: &str| {
        encoded.details.iter().find(|any| any.type_url == type_url).map(|any| any.value.as_slice()).expect(type_url)
    };
    let info = ErrorInfo::decode(any("type.googleapis.com/google.rpc.ErrorInfo")).expect("ErrorInfo");
    assert_eq!(info, ErrorInfo { reason: "INSUFFICIENT_BALANCE".into(), domain: "economy.ledger".into(), metadata });
    let bad = BadRequest::decode(any("type.googleapis.com/google.rpc.BadRequest")).expect("BadRequest");
    assert_eq!(
        bad.field_violations,
        [FieldViolation { field: "amount".into(), description: "must be positive".into() }]
    );
}

#[test]
fn the_vendored_error_info_decodes_with_tonic_types() {
    let info = ErrorInfo {
        reason: "ROLE_TOO_LOW".into(),
        domain: "economy.gateway".into(),
        metadata: HashMap::from([("min_role_level".to_owned(), "100".to_owned())]),
    };
    let any =
        prost_types::Any { type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(), value: info.encode_to_vec() };
    let status =
        tonic_types::pb::Status { code: Code::PermissionDenied as i32, message: "denied".into(), details: vec![any] };
    let status = tonic::Status::with_details(Code::PermissionDenied, "denied", status.encode_to_vec().into());
    let decoded = status.get_details_error_info().expect("ErrorInfo");
    assert_eq!((decoded.reason.as_str(), decoded.domain.as_str()), ("ROLE_TOO_LOW", "economy.gateway"));
    assert_eq!(decoded.metadata.get("min_role_level").map(String::as_str), Some("100"));
}
