//! `ImportItems` (docs/import.md, "Item instances"): each row is validated on its own and
//! answered with its own outcome; the call's new rows are written together
//! (`ItemStore::import_items`; docs/import.md, "Speed"). Only a failure of the service
//! itself (a storage error) fails the whole call, which the importer then retries.

use economy_kit::error::{Violations, reason};
use economy_kit::reasons;
use economy_proto::items::v1 as pb;
use tonic::Status;

use super::{DOMAIN, convert};
use crate::domain::import::{ImportPlan, ImportedItem, parse_external_id, parse_import_status};
use crate::domain::item::ItemStatus;
use crate::store::{Imported, ItemStore};

/// Most rows in one call.
pub const MAX_ROWS: usize = 1000;

/// Imports every row of `request`, as `actor`, at `now`; the results in row order.
pub async fn import_items(
    store: &ItemStore,
    request: &pb::ImportItemsRequest,
    actor: &str,
    now: i64,
) -> Result<pb::ImportItemsResponse, Status> {
    let mut violations = Violations::default();
    violations.check((1..=MAX_ROWS).contains(&request.rows.len()), "rows", "must hold 1-1000 rows");
    violations.finish(DOMAIN)?;
    let planned: Vec<_> = request.rows.iter().map(|row| plan(row, actor)).collect();
    let plans: Vec<ImportPlan> = planned.iter().filter_map(|plan| plan.as_ref().ok()).cloned().collect();
    let mut imported = store.import_items(&plans, now).await.map_err(Status::from)?.into_iter();
    let mut results = Vec::with_capacity(request.rows.len());
    for (row, plan) in request.rows.iter().zip(planned) {
        let outcome = match plan {
            Ok(_) => {
                imported.next().ok_or_else(|| Status::internal("a planned row has no result"))?.map_err(Status::from)
            }
            Err(refusal) => Err(refusal),
        };
        results.push(result(row, outcome)?);
    }
    Ok(pb::ImportItemsResponse { results })
}

/// One row's result from its outcome; `Err` only for a failure that is not the row's fault.
fn result(row: &pb::ImportItemRow, outcome: Result<Imported, Status>) -> Result<pb::ImportItemResult, Status> {
    let result = |outcome: pb::ImportOutcome, id: String| pb::ImportItemResult {
        external_id: row.external_id.clone(),
        outcome: outcome.into(),
        item_instance_id: id,
        ..Default::default()
    };
    match outcome {
        Ok(Imported::Created(id)) => Ok(result(pb::ImportOutcome::Created, id)),
        Ok(Imported::Unchanged(id)) => Ok(result(pb::ImportOutcome::Unchanged, id)),
        Ok(Imported::Conflict(id)) => Ok(pb::ImportItemResult {
            reason: reasons::IMPORT_ROW_CONFLICT.to_owned(),
            message: format!("external id {} was imported before with other content (item {id})", row.external_id),
            ..result(pb::ImportOutcome::Refused, String::new())
        }),
        Err(status) if economy_kit::error::is_row_refusal(&status) => Ok(pb::ImportItemResult {
            reason: reason(&status).unwrap_or_default(),
            message: status.message().to_owned(),
            ..result(pb::ImportOutcome::Refused, String::new())
        }),
        Err(status) => Err(status),
    }
}

/// The row, validated (every bad field listed at once) and planned.
fn plan(row: &pb::ImportItemRow, actor: &str) -> Result<ImportPlan, Status> {
    let mut violations = Violations::default();
    let external_id = convert::field(&mut violations, "external_id", parse_external_id(&row.external_id));
    let template = convert::code(&mut violations, "template_code", &row.template_code);
    let owner = convert::user(&mut violations, "owner_user_id", row.owner_user_id);
    let status = convert::field(&mut violations, "status", status(row.status));
    let state = status.and_then(|status| convert::field(&mut violations, "status", parse_import_status(status)));
    let metadata = convert::metadata(&mut violations, "metadata", &row.metadata);
    let expires_at = convert::instant(&mut violations, "expires_at", row.expires_at.as_ref());
    let granted_at = convert::instant(&mut violations, "granted_at", row.granted_at.as_ref())
        .and_then(|at| convert::field(&mut violations, "granted_at", at.ok_or("is required")));
    violations.finish(DOMAIN)?;
    let (Some(external_id), Some(template), Some(owner), Some(status), Some(state), Some(metadata)) =
        (external_id, template, owner, status, state, metadata)
    else {
        return Err(Status::internal("validated value missing"));
    };
    let (Some(expires_at), Some(granted_at)) = (expires_at, granted_at) else {
        return Err(Status::internal("validated value missing"));
    };
    let row = ImportedItem { external_id, template, owner, status, expires_at, granted_at, metadata };
    row.plan(state, actor).map_err(|description| {
        let mut violations = Violations::default();
        violations.add("external_id", description);
        violations.finish(DOMAIN).err().unwrap_or_else(|| Status::internal("no violation"))
    })
}

fn status(value: i32) -> Result<ItemStatus, &'static str> {
    match pb::ItemStatus::try_from(value) {
        Ok(pb::ItemStatus::Available) => Ok(ItemStatus::Available),
        Ok(pb::ItemStatus::Locked) => Ok(ItemStatus::Locked),
        Ok(pb::ItemStatus::Used) => Ok(ItemStatus::Used),
        Ok(pb::ItemStatus::Expired) => Ok(ItemStatus::Expired),
        Ok(pb::ItemStatus::Revoked) => Ok(ItemStatus::Revoked),
        _ => Err("must be AVAILABLE, USED, EXPIRED or REVOKED"),
    }
}
