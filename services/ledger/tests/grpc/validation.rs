//! Input that is wrong in shape: blank required text and unknown enum numbers are refused
//! with `VALIDATION_FAILED`, and request bytes that are no message at all are answered
//! with a status, never a panic.

use economy_kit::error::violated_fields;
use economy_kit::identity::{Caller, roles};
use economy_proto::ledger::v1 as pb;
use economy_testkit::assert_malformed_bytes_answered;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use crate::common::*;

#[tokio::test]
async fn blank_required_text_is_refused_like_empty_text() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    for blank in ["", " ", "\t\n \u{3000}"] {
        let asset = pb::Asset {
            code: "GOLD".into(),
            display_name: blank.into(),
            kind: pb::AssetKind::Currency.into(),
            ..Default::default()
        };
        let status = assert_error(
            admin.define_asset(pb::DefineAssetRequest { asset: Some(asset) }).await,
            Code::InvalidArgument,
            "VALIDATION_FAILED",
        );
        assert_eq!(violated_fields(&status), ["asset.display_name"]);
        let adjust = pb::AdjustBalanceRequest { reason: blank.into(), ..adjust_request(2, "POINTS", 5, &new_key()) };
        let status = assert_error(admin.adjust_balance(adjust).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&status), ["reason"]);
    }
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (0, 0));
}

#[tokio::test]
async fn unknown_enum_numbers_are_refused() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    for status in [5, 99, -1] {
        let list = pb::ListHoldsRequest { account: user(2), status, ..Default::default() };
        let refused = assert_error(admin.list_holds(list).await, Code::InvalidArgument, "VALIDATION_FAILED");
        assert_eq!(violated_fields(&refused), ["status"]);
    }
    let adjust = pb::AdjustBalanceRequest { direction: 3, ..adjust_request(2, "POINTS", 5, &new_key()) };
    assert_error(admin.adjust_balance(adjust).await, Code::InvalidArgument, "VALIDATION_FAILED");
    let asset = pb::Asset { code: "GOLD".into(), display_name: "Gold".into(), kind: 42, ..Default::default() };
    let defined = admin.define_asset(pb::DefineAssetRequest { asset: Some(asset) }).await;
    assert_error(defined, Code::InvalidArgument, "VALIDATION_FAILED");
}

#[tokio::test]
async fn malformed_request_bytes_get_a_status_on_every_method() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let service = "economy.ledger.v1.LedgerService";
    let signer = app.key.signer(Caller::user(ADMIN, roles::ADMIN));
    assert_malformed_bytes_answered(InterceptedService::new(app.channel().await, signer), service).await;
    // The server is still serving, and nothing was written by the noise.
    assert_consistent(&mut admin).await;
    let assets = admin.list_assets(pb::ListAssetsRequest {}).await.unwrap().into_inner().assets;
    assert_eq!(assets.len(), 4);
}
