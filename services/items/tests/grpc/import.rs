//! ImportItems (docs/import.md, "Item instances"): rows created in their legacy status
//! with an IMPORTED event, unchanged when imported again, refused one by one.

use economy_kit::time::to_timestamp;
use economy_proto::items::v1 as pb;
use tonic::Code;

use crate::common::*;

fn row(external_id: &str, owner: i64, status: pb::ItemStatus) -> pb::ImportItemRow {
    pb::ImportItemRow {
        external_id: external_id.into(),
        template_code: "voucher".into(),
        owner_user_id: owner,
        status: status.into(),
        metadata: [("serial".to_owned(), external_id.to_owned())].into(),
        expires_at: Some(to_timestamp(4_000_000_000_000)),
        granted_at: Some(to_timestamp(1_600_000_000_000)),
    }
}

async fn import(admin: &mut Client, rows: Vec<pb::ImportItemRow>) -> Vec<pb::ImportItemResult> {
    admin.import_items(pb::ImportItemsRequest { rows }).await.unwrap().into_inner().results
}

#[tokio::test]
async fn rows_are_created_in_their_status_with_an_imported_event() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let results =
        import(&mut admin, vec![row("L-1", 7, pb::ItemStatus::Available), row("L-2", 7, pb::ItemStatus::Used)]).await;
    assert_eq!(results.iter().map(|result| result.outcome()).collect::<Vec<_>>(), [pb::ImportOutcome::Created; 2]);
    let used = admin.get_item(pb::GetItemRequest { item_instance_id: results[1].item_instance_id.clone() }).await;
    let used = used.unwrap().into_inner().item.unwrap();
    assert_eq!((used.owner_user_id, used.status(), used.version), (7, pb::ItemStatus::Used, 1));
    assert_eq!(used.created_at, Some(to_timestamp(1_600_000_000_000)));
    assert_eq!(used.metadata.get("serial").map(String::as_str), Some("L-2"));
    let events = admin
        .list_item_events(pb::ListItemEventsRequest { item_instance_id: used.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .events;
    let event = &events[0];
    assert_eq!(events.len(), 1);
    assert_eq!(
        (event.r#type(), event.status(), event.business_type.as_str()),
        (pb::ItemEventType::Imported, pb::ItemStatus::Used, "IMPORT")
    );
    assert_eq!((event.idempotency_key.as_str(), event.to_owner_user_id), ("import:L-2", 7));
}

#[tokio::test]
async fn the_same_row_again_changes_nothing_and_another_row_is_refused() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let first = import(&mut admin, vec![row("L-1", 7, pb::ItemStatus::Available)]).await;
    let again =
        import(&mut admin, vec![row("L-1", 7, pb::ItemStatus::Available), row("L-1", 8, pb::ItemStatus::Available)])
            .await;
    assert_eq!(again[0].outcome(), pb::ImportOutcome::Unchanged);
    assert_eq!(again[0].item_instance_id, first[0].item_instance_id);
    assert_eq!((again[1].outcome(), again[1].reason.as_str()), (pb::ImportOutcome::Refused, "IMPORT_ROW_CONFLICT"));
    let owned = admin.list_items(pb::ListItemsRequest { owner_user_id: 8, ..Default::default() }).await.unwrap();
    assert!(owned.into_inner().items.is_empty());
}

#[tokio::test]
async fn bad_rows_are_refused_alone_and_write_nothing() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let unknown = pb::ImportItemRow { template_code: "nope".into(), ..row("L-3", 7, pb::ItemStatus::Available) };
    let locked = row("L-4", 7, pb::ItemStatus::Locked);
    let undated = pb::ImportItemRow { granted_at: None, owner_user_id: 0, ..row("L-5", 7, pb::ItemStatus::Used) };
    let results = import(&mut admin, vec![unknown, locked, undated, row("L-6", 7, pb::ItemStatus::Expired)]).await;
    let outcomes: Vec<_> = results.iter().map(|result| (result.outcome(), result.reason.as_str())).collect();
    assert_eq!(
        outcomes,
        [
            (pb::ImportOutcome::Refused, "TEMPLATE_NOT_FOUND"),
            (pb::ImportOutcome::Refused, "VALIDATION_FAILED"),
            (pb::ImportOutcome::Refused, "VALIDATION_FAILED"),
            (pb::ImportOutcome::Created, ""),
        ]
    );
    assert!(results[2].message.contains("granted_at") && results[2].message.contains("owner_user_id"));
    let owned = admin.list_items(pb::ListItemsRequest { owner_user_id: 7, ..Default::default() }).await.unwrap();
    assert_eq!(owned.into_inner().items.len(), 1);
}

#[tokio::test]
async fn only_admins_import_and_batches_are_bounded() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let mut user = app.user(7).await;
    let refused =
        user.import_items(pb::ImportItemsRequest { rows: vec![row("L-1", 7, pb::ItemStatus::Available)] }).await;
    assert_error(refused, Code::PermissionDenied, "PERMISSION_DENIED");
    let empty = admin.import_items(pb::ImportItemsRequest { rows: Vec::new() }).await;
    assert_error(empty, Code::InvalidArgument, "VALIDATION_FAILED");
}

/// A batch is written together (docs/import.md, "Speed"): a bad row in it is refused with
/// nothing of it left, every other row lands with its IMPORTED event, and the same batch
/// again changes nothing.
#[tokio::test]
async fn a_batch_lands_every_good_row_and_nothing_of_a_bad_one() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    import(&mut admin, vec![row("B-0", 20, pb::ItemStatus::Available)]).await;
    let mut rows: Vec<_> = (1..=40).map(|n| row(&format!("B-{n}"), 20 + n % 3, pb::ItemStatus::Used)).collect();
    rows.insert(7, pb::ImportItemRow { template_code: "nope".into(), ..row("B-bad", 29, pb::ItemStatus::Available) });
    rows.push(row("B-0", 20, pb::ItemStatus::Available));
    let first = import(&mut admin, rows.clone()).await;
    let outcomes: Vec<_> = first.iter().map(|result| (result.outcome(), result.reason.as_str())).collect();
    assert_eq!(outcomes[7], (pb::ImportOutcome::Refused, "TEMPLATE_NOT_FOUND"));
    assert_eq!(outcomes[41], (pb::ImportOutcome::Unchanged, ""));
    let created = outcomes.iter().filter(|outcome| outcome.0 == pb::ImportOutcome::Created).count();
    assert_eq!(created, 40);

    let again = import(&mut admin, rows).await;
    for (at, (before, after)) in first.iter().zip(&again).enumerate() {
        let expected = if at == 7 { pb::ImportOutcome::Refused } else { pb::ImportOutcome::Unchanged };
        assert_eq!((after.outcome(), &after.item_instance_id), (expected, &before.item_instance_id));
    }
    let mut owned = 0;
    for owner in [20, 21, 22, 29] {
        let request = pb::ListItemsRequest { owner_user_id: owner, page_size: 100, ..Default::default() };
        owned += admin.list_items(request).await.unwrap().into_inner().items.len();
    }
    assert_eq!(owned, 41, "every good row once, nothing of the bad one");
    let item = &first[12].item_instance_id;
    let events = admin
        .list_item_events(pb::ListItemEventsRequest { item_instance_id: item.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .events;
    let kinds: Vec<_> = events.iter().map(|event| (event.r#type(), event.idempotency_key.as_str())).collect();
    assert_eq!(kinds, [(pb::ItemEventType::Imported, "import:B-12")]);
}
