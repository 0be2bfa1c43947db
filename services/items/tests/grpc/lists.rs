//! ListItems (paging, status filter, grouped view) and ListItemEvents paging.

use std::collections::BTreeSet;

use economy_kit::time::{from_timestamp, now_millis, to_timestamp};
use economy_proto::items::v1 as pb;
use tonic::Code;

use crate::common::*;

const DAY: i64 = 86_400_000;

fn list(owner: i64, statuses: &[pb::ItemStatus], page_size: i32, page_token: &str) -> pb::ListItemsRequest {
    pb::ListItemsRequest {
        owner_user_id: owner,
        statuses: statuses.iter().map(|status| *status as i32).collect(),
        page_size,
        page_token: page_token.into(),
        grouped: false,
    }
}

#[tokio::test]
async fn items_are_paged_newest_first_and_filtered() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let mut granted = Vec::new();
    for _ in 0..7 {
        granted.push(grant(&mut admin, 2, "sword").await.id);
    }
    grant(&mut admin, 3, "sword").await;
    lock(&mut market, &granted[1], MARKET).await;
    lock(&mut market, &granted[4], MARKET).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin.list_items(list(2, &[], 3, &token)).await.unwrap().into_inner();
        assert!(page.groups.is_empty());
        seen.extend(page.items.iter().map(|item| item.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<String> = granted.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let locked = admin.list_items(list(2, &[pb::ItemStatus::Locked], 0, "")).await.unwrap().into_inner().items;
    assert_eq!(
        locked.iter().map(|item| item.id.as_str()).collect::<Vec<_>>(),
        [granted[4].as_str(), granted[1].as_str()]
    );
    let statuses = [pb::ItemStatus::Available, pb::ItemStatus::Locked, pb::ItemStatus::Available];
    assert_eq!(admin.list_items(list(2, &statuses, 0, "")).await.unwrap().into_inner().items.len(), 7);
    let used = admin.list_items(list(2, &[pb::ItemStatus::Used], 0, "")).await.unwrap().into_inner();
    assert!(used.items.is_empty() && used.next_page_token.is_empty());

    for bad in [
        list(2, &[], 501, ""),
        list(2, &[], 0, "not-a-token"),
        list(2, &[pb::ItemStatus::Unspecified], 0, ""),
        list(-2, &[], 0, ""),
    ] {
        assert_error(admin.list_items(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
    }
}

#[tokio::test]
async fn the_grouped_view_counts_look_alike_items() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let tomorrow = (now_millis() / DAY + 1) * DAY;
    let grant_with = |meta: &str, expires_at: Option<i64>| pb::GrantItemRequest {
        metadata: [("color".to_owned(), meta.to_owned())].into(),
        expires_at: expires_at.map(to_timestamp),
        ..grant_request(2, "sword")
    };
    let mut red = BTreeSet::new();
    for offset in [1_000, 2_000, 3_000] {
        // Same UTC day, same metadata: one group.
        red.insert(
            admin.grant_item(grant_with("red", Some(tomorrow + offset))).await.unwrap().into_inner().item.unwrap().id,
        );
    }
    let blue = admin.grant_item(grant_with("blue", Some(tomorrow + 1_000))).await.unwrap().into_inner().item.unwrap();
    let next_day = admin.grant_item(grant_with("red", Some(tomorrow + DAY))).await.unwrap().into_inner().item.unwrap();
    let forever = admin.grant_item(grant_with("red", None)).await.unwrap().into_inner().item.unwrap();
    let locked = admin.grant_item(grant_with("red", Some(tomorrow + 4_000))).await.unwrap().into_inner().item.unwrap();
    lock(&mut market, &locked.id, MARKET).await;
    let potions = [grant(&mut admin, 2, "potion").await, grant(&mut admin, 2, "potion").await];
    admin.consume_item(consume_request(&potions[0].id, "")).await.unwrap();
    admin.revoke_item(revoke_request(&potions[1].id)).await.unwrap();
    grant(&mut admin, 3, "sword").await;

    let grouped = |page_size, token: &str| pb::ListItemsRequest { grouped: true, ..list(2, &[], page_size, token) };
    let groups = admin.list_items(grouped(0, "")).await.unwrap().into_inner();
    assert!(groups.items.is_empty() && groups.next_page_token.is_empty());
    let groups = groups.groups;
    // potion/finished, then sword groups by bucket, expiry day (never first) and hash.
    let summary: Vec<(&str, pb::StatusBucket, i64)> =
        groups.iter().map(|group| (group.template_code.as_str(), group.bucket(), group.count)).collect();
    assert_eq!(summary.len(), 6, "{summary:?}");
    assert_eq!(summary[0], ("potion", pb::StatusBucket::Finished, 2));
    let red_group =
        groups.iter().find(|group| group.count == 3).unwrap_or_else(|| panic!("no group of three in {summary:?}"));
    assert_eq!(red_group.item_instance_ids.iter().cloned().collect::<BTreeSet<_>>(), red);
    let mut newest_first = red_group.item_instance_ids.clone();
    newest_first.sort_by(|left, right| right.cmp(left));
    assert_eq!(red_group.item_instance_ids, newest_first);
    assert_eq!(from_timestamp(red_group.expiry_day.as_ref().unwrap()), Some(tomorrow));
    assert_eq!(red_group.bucket(), pb::StatusBucket::Available);
    let group_of =
        |id: &str| groups.iter().find(|group| group.item_instance_ids.iter().any(|member| member == id)).unwrap();
    assert_eq!(group_of(&blue.id).count, 1);
    assert_ne!(group_of(&blue.id).metadata_hash, red_group.metadata_hash);
    assert_eq!(from_timestamp(group_of(&next_day.id).expiry_day.as_ref().unwrap()), Some(tomorrow + DAY));
    assert!(group_of(&forever.id).expiry_day.is_none());
    assert_eq!(group_of(&locked.id).bucket(), pb::StatusBucket::Locked);

    // Paged by group, the pages add up to the whole view.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin.list_items(grouped(4, &token)).await.unwrap().into_inner();
        paged.extend(page.groups);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, groups);

    // The status filter applies before grouping.
    let available = pb::ListItemsRequest { grouped: true, ..list(2, &[pb::ItemStatus::Available], 0, "") };
    let available = admin.list_items(available).await.unwrap().into_inner().groups;
    assert_eq!(available.iter().map(|group| group.count).sum::<i64>(), 6);
    let bad = pb::ListItemsRequest { grouped: true, ..list(2, &[], 0, "abcd") };
    assert_error(admin.list_items(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
}

#[tokio::test]
async fn events_are_paged_oldest_first() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut market = app.service("market").await;
    let item = grant(&mut admin, 2, "sword").await;
    for _ in 0..3 {
        lock(&mut market, &item.id, MARKET).await;
        market.unlock_item(unlock_request(&item.id, MARKET)).await.unwrap();
    }
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListItemEventsRequest {
            item_instance_id: item.id.clone(),
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let page = admin.list_item_events(request).await.unwrap().into_inner();
        versions.extend(page.events.iter().map(|event| event.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(versions, (1..=7).collect::<Vec<_>>());
    let bad = pb::ListItemEventsRequest {
        item_instance_id: item.id,
        page_size: 0,
        page_token: "x".into(),
        ..Default::default()
    };
    assert_error(admin.list_item_events(bad).await, Code::InvalidArgument, "VALIDATION_FAILED");
}
