//! Asset catalog and conversion rules.

use economy_kit::error::violated_fields;
use economy_proto::ledger::v1 as pb;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn assets_are_defined_updated_and_listed() {
    let app = spawn_app().await;
    let mut admin = app.admin().await;
    let created = define_asset(&mut admin, "POINTS", pb::AssetKind::Currency).await.unwrap();
    assert!(created.created);
    let mut asset = created.asset.unwrap();
    asset.display_name = "Loyalty points".into();
    asset.metadata.insert("icon".into(), "star.png".into());
    let updated = admin.define_asset(pb::DefineAssetRequest { asset: Some(asset) }).await.unwrap().into_inner();
    assert!(!updated.created);
    define_asset(&mut admin, "DIAMOND", pb::AssetKind::Currency).await.unwrap();

    let mut user = app.user(5).await;
    let listed = user.list_assets(pb::ListAssetsRequest {}).await.unwrap().into_inner().assets;
    let codes: Vec<&str> = listed.iter().map(|asset| asset.code.as_str()).collect();
    assert_eq!(codes, ["DIAMOND", "POINTS"]);
    assert_eq!(listed[1].display_name, "Loyalty points");
    assert_eq!(listed[1].metadata.get("icon").map(String::as_str), Some("star.png"));
}

#[tokio::test]
async fn invalid_assets_list_every_bad_field() {
    let app = spawn_app().await;
    let mut admin = app.admin().await;
    let asset = pb::Asset { code: "1-bad".into(), display_name: String::new(), kind: 0, ..Default::default() };
    let status = assert_error(
        admin.define_asset(pb::DefineAssetRequest { asset: Some(asset) }).await,
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
    assert_eq!(violated_fields(&status), ["asset.code", "asset.display_name", "asset.kind"]);
    let missing = admin.define_asset(pb::DefineAssetRequest { asset: None }).await;
    assert_error(missing, Code::InvalidArgument, "VALIDATION_FAILED");
}

fn rule(enabled: bool) -> pb::ConversionRule {
    pb::ConversionRule {
        id: "shard_to_crystal".into(),
        from_asset: "red_shard".into(),
        from_amount: 10,
        to_asset: "red_crystal".into(),
        to_amount: 1,
        enabled,
    }
}

fn convert(user_id: i64, quantity: i64) -> pb::ConvertAssetRequest {
    pb::ConvertAssetRequest { idempotency_key: new_key(), user_id, rule_id: "shard_to_crystal".into(), quantity }
}

#[tokio::test]
async fn conversion_burns_and_mints_through_issuance() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    admin.define_conversion_rule(pb::DefineConversionRuleRequest { rule: Some(rule(true)) }).await.unwrap();
    adjust(&mut admin, 2, "red_shard", 35).await.unwrap();

    let mut user2 = app.user(2).await;
    let entry = user2.convert_asset(convert(2, 3)).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(entry.business_type, "ASSET_CONVERT");
    assert_eq!(balance(&mut user2, 2, "red_shard").await, (5, 0));
    assert_eq!(balance(&mut user2, 2, "red_crystal").await, (3, 0));
    assert_eq!(balance_of(&mut admin, system("SYSTEM_ISSUANCE"), "red_crystal").await, (-3, 0));

    assert_error(user2.convert_asset(convert(2, 1)).await, Code::FailedPrecondition, "INSUFFICIENT_BALANCE");
    assert_error(app.user(3).await.convert_asset(convert(2, 1)).await, Code::PermissionDenied, "PERMISSION_DENIED");
    let unknown = pb::ConvertAssetRequest { rule_id: "nope".into(), ..convert(2, 1) };
    assert_error(user2.convert_asset(unknown).await, Code::NotFound, "RULE_NOT_FOUND");
    admin.define_conversion_rule(pb::DefineConversionRuleRequest { rule: Some(rule(false)) }).await.unwrap();
    assert_error(user2.convert_asset(convert(2, 1)).await, Code::FailedPrecondition, "RULE_DISABLED");
    let rules = user2.list_conversion_rules(pb::ListConversionRulesRequest {}).await.unwrap().into_inner().rules;
    assert_eq!(rules, [rule(false)]);
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn rules_need_existing_distinct_assets() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let unknown = pb::ConversionRule { to_asset: "gold".into(), ..rule(true) };
    assert_error(
        admin.define_conversion_rule(pb::DefineConversionRuleRequest { rule: Some(unknown) }).await,
        Code::NotFound,
        "ASSET_NOT_FOUND",
    );
    let same = pb::ConversionRule { to_asset: "red_shard".into(), ..rule(true) };
    assert_error(
        admin.define_conversion_rule(pb::DefineConversionRuleRequest { rule: Some(same) }).await,
        Code::InvalidArgument,
        "VALIDATION_FAILED",
    );
}
