//! Input that is wrong in shape: blank required text and unknown enum numbers are refused
//! with `VALIDATION_FAILED`, and request bytes that are no message at all are answered
//! with a status, never a panic.

use economy_kit::error::violated_fields;
use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as pb;
use economy_testkit::assert_malformed_bytes_answered;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;

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

#[tokio::test]
async fn malformed_request_bytes_get_a_status_on_every_method() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let service = "economy.items.v1.ItemService";
    let signer = app.key.signer(Caller::user(ADMIN, roles::ADMIN));
    assert_malformed_bytes_answered(InterceptedService::new(app.channel().await, signer), service).await;
    // The server is still serving, and the noise defined no template.
    let templates = admin.list_templates(pb::ListTemplatesRequest {}).await.unwrap().into_inner().templates;
    assert_eq!(templates.len(), 3);
}
