//! GetBackpack: assets and items kept apart, paging, grouping, authorization and partial
//! upstream failure.

use economy_kit::identity::roles;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;

use crate::common::*;

fn request(page_size: i32, page_token: &str, grouped: bool) -> pb::GetBackpackRequest {
    pb::GetBackpackRequest { user_id: 0, page_size, page_token: page_token.into(), grouped }
}

#[tokio::test]
async fn assets_and_items_are_kept_apart() {
    let stack = spawn_stack().await;
    stack.fund(USER, &[("DIAMOND", 500), ("red_shard", 30)]).await;
    let hold = ledger::CreateHoldRequest {
        account: Some(ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(USER)) }),
        asset_code: "red_shard".into(),
        amount: 10,
        ..Default::default()
    };
    stack.ledger().await.create_hold(with_new_key(hold)).await.expect("hold");
    let ids = stack.grant(USER, "voucher", 3).await;
    let used = items::ConsumeItemRequest { item_instance_id: ids[0].clone(), ..Default::default() };
    stack.items().await.consume_item(with_new_key(used)).await.expect("consume");

    let backpack = stack.backpack(USER, roles::USER).await.get_backpack(request(0, "", false)).await.expect("backpack");
    let backpack = backpack.into_inner();
    assert_eq!(backpack.user_id, USER);
    let assets: Vec<(&str, &str, i64, i64, i64)> = backpack
        .assets
        .iter()
        .map(|asset| {
            (asset.asset_code.as_str(), asset.display_name.as_str(), asset.available, asset.frozen, asset.total)
        })
        .collect();
    assert_eq!(assets, [("DIAMOND", "Diamond", 500, 0, 500), ("red_shard", "Red shard", 20, 10, 30)]);
    assert_eq!(backpack.assets[1].kind, ledger::AssetKind::Fragment as i32);
    let listed: Vec<&str> = backpack.items.iter().map(|item| item.id.as_str()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()], "newest first, the used one left out");
    assert!(backpack.items.iter().all(|item| item.template_code == "voucher"));
    assert!(backpack.assets.iter().all(|asset| !ids.contains(&asset.asset_code)));
}

#[tokio::test]
async fn items_page_and_group() {
    let stack = spawn_stack().await;
    let ids = stack.grant(USER, "voucher", 5).await;
    let mut client = stack.backpack(USER, roles::USER).await;
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = client.get_backpack(request(2, &token, false)).await.expect("page").into_inner();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|item| item.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let grouped = client.get_backpack(request(0, "", true)).await.expect("grouped").into_inner();
    assert!(grouped.items.is_empty());
    assert_eq!(grouped.groups.len(), 1);
    assert_eq!((grouped.groups[0].count, grouped.groups[0].item_instance_ids.len()), (5, 5));
}

#[tokio::test]
async fn users_read_their_own_backpack_and_admins_any() {
    let stack = spawn_stack().await;
    stack.grant(USER, "voucher", 1).await;
    let other = pb::GetBackpackRequest { user_id: USER, ..Default::default() };
    let denied = stack.backpack(9, roles::USER).await.get_backpack(other.clone()).await.expect_err("not theirs");
    assert_eq!(reason_of(&denied), "PERMISSION_DENIED");
    let admin = stack.backpack(ADMIN, roles::ADMIN).await.get_backpack(other).await.expect("admin").into_inner();
    assert_eq!((admin.user_id, admin.items.len()), (USER, 1));
    let mut anonymous = pb::backpack_service_client::BackpackServiceClient::new(
        tonic::transport::Channel::from_shared(stack.url_of(Service::Gateway))
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );
    let unauthenticated = anonymous.get_backpack(request(0, "", false)).await.expect_err("no token");
    assert_eq!(reason_of(&unauthenticated), "TOKEN_MISSING");
}

#[tokio::test]
async fn a_failing_upstream_fails_the_whole_backpack() {
    let mut stack = spawn_stack().await;
    stack.fund(USER, &[("DIAMOND", 5)]).await;
    stack.stop(Service::Items).await;
    let mut client = stack.backpack(USER, roles::USER).await;
    let failed = client.get_backpack(request(0, "", false)).await.expect_err("items down");
    assert_eq!((failed.code(), reason_of(&failed)), (tonic::Code::Unavailable, "UPSTREAM_UNAVAILABLE".to_owned()));
    assert!(failed.message().contains("items"), "{failed:?}");
    stack.stop(Service::Ledger).await;
    let failed = client.get_backpack(request(0, "", false)).await.expect_err("both down");
    assert_eq!(failed.code(), tonic::Code::Unavailable);
}
