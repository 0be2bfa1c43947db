//! The template catalog: define, update, get, list, validation.

use economy_kit::error::violated_fields;
use economy_proto::items::v1 as pb;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn templates_are_defined_updated_fetched_and_listed() {
    let app = spawn_app().await;
    let mut admin = app.admin().await;
    let created = define(&mut admin, template("voucher", pb::ItemKind::Voucher, 3600, false)).await.unwrap();
    assert!(created.created);
    let mut stored = created.template.unwrap();
    assert_eq!(
        (stored.kind(), stored.default_validity_seconds, stored.redeemable),
        (pb::ItemKind::Voucher, 3600, true)
    );
    stored.display_name = "Coffee voucher".into();
    stored.consumable = true;
    stored.metadata.insert("icon".into(), "cup.png".into());
    let updated = define(&mut admin, stored.clone()).await.unwrap();
    assert!(!updated.created);
    let updated = updated.template.unwrap();
    assert_eq!(updated.created_at, stored.created_at);
    define(&mut admin, template("card", pb::ItemKind::Card, 0, false)).await.unwrap();

    let mut user = app.user(5).await;
    let listed = user.list_templates(pb::ListTemplatesRequest {}).await.unwrap().into_inner().templates;
    assert_eq!(listed.iter().map(|template| template.code.as_str()).collect::<Vec<_>>(), ["card", "voucher"]);
    let fetched = user.get_template(pb::GetTemplateRequest { code: "voucher".into() }).await.unwrap().into_inner();
    let fetched = fetched.template.unwrap();
    assert_eq!(fetched, listed[1]);
    assert_eq!((fetched.display_name.as_str(), fetched.consumable), ("Coffee voucher", true));
    assert_eq!(fetched.metadata.get("icon").map(String::as_str), Some("cup.png"));

    let missing = user.get_template(pb::GetTemplateRequest { code: "nothing".into() }).await;
    assert_error(missing, Code::NotFound, "TEMPLATE_NOT_FOUND");
    let malformed = user.get_template(pb::GetTemplateRequest { code: "1-x".into() }).await;
    assert_error(malformed, Code::InvalidArgument, "VALIDATION_FAILED");
}

#[tokio::test]
async fn invalid_templates_list_every_bad_field() {
    let app = spawn_app().await;
    let mut admin = app.admin().await;
    let bad = pb::ItemTemplate {
        code: "1-bad".into(),
        display_name: String::new(),
        kind: 0,
        default_validity_seconds: -1,
        metadata: [(String::new(), "x".into())].into(),
        ..Default::default()
    };
    let status = assert_error(define(&mut admin, bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
    assert_eq!(
        violated_fields(&status),
        [
            "template.code",
            "template.display_name",
            "template.kind",
            "template.default_validity_seconds",
            "template.metadata"
        ]
    );
    let missing = admin.define_template(pb::DefineTemplateRequest { template: None }).await;
    assert_error(missing, Code::InvalidArgument, "VALIDATION_FAILED");
    let unknown_kind = pb::ItemTemplate { kind: 99, ..template("x", pb::ItemKind::Other, 0, false) };
    assert_error(define(&mut admin, unknown_kind).await, Code::InvalidArgument, "VALIDATION_FAILED");
}
