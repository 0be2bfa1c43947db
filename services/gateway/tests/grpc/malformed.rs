//! Request bytes that do not decode (truncated, wrong wire types, invalid UTF-8 in a
//! string) answer `INVALID_ARGUMENT` / `MALFORMED_REQUEST` with ErrorInfo and no field
//! path, on reads and writes, through the gateway and on an internal service alike.

use economy_kit::identity::{Caller, roles};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;

const GET_BALANCE: &str = "/economy.ledger.v1.LedgerService/GetBalance";
/// Field 2 (`asset_code`, a string) holding bytes that are not UTF-8.
const INVALID_UTF8: [u8; 4] = [0x12, 0x02, 0xff, 0xfe];

#[track_caller]
fn assert_malformed(result: Result<tonic::Response<bytes::Bytes>, tonic::Status>, domain: &str) {
    let status = assert_error(result, Code::InvalidArgument, "MALFORMED_REQUEST");
    assert_eq!(status.get_details_error_info().unwrap().domain, domain);
    assert!(!status.message().contains("Request"), "no message or field names leak: {}", status.message());
}

#[tokio::test]
async fn malformed_reads_and_writes_through_the_gateway_are_invalid_arguments() {
    let stack = stack().await;
    let admin = bearer(ADMIN, roles::ADMIN);
    let paths = [GET_BALANCE, "/economy.gateway.v1.BackpackService/GetBackpack", ADJUST];
    for path in paths {
        for body in [vec![0xff, 0xff, 0xff], INVALID_UTF8.to_vec()] {
            let request = raw_request(body, &admin, Some(&new_key()));
            assert_malformed(raw_call(channel(&stack.gateway_url()).await, path, request).await, "economy.gateway");
        }
    }
}

#[tokio::test]
async fn an_internal_service_answers_malformed_bytes_the_same_way() {
    let stack = stack().await;
    for body in [vec![0xff, 0xff, 0xff], INVALID_UTF8.to_vec()] {
        let mut request = tonic::Request::new(bytes::Bytes::from(body));
        identity().attach(&Caller::user(ADMIN, roles::ADMIN), request.metadata_mut());
        assert_malformed(raw_call(channel(&stack.ledger_url()).await, GET_BALANCE, request).await, "economy.ledger");
    }
}
