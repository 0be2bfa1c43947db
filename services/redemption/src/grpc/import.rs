//! `ImportOrders` (docs/import.md, "Redemption orders"): each row is validated and
//! imported on its own and answered with its own outcome, [`ROWS_IN_FLIGHT`] rows of a
//! call at once (each row's import converges whatever runs beside it; docs/import.md,
//! "Speed"); only a failure of the service or of Items' availability fails the whole
//! call, which the importer then retries.

use economy_kit::error::{Violations, reason};
use economy_kit::reasons;
use economy_kit::time::from_timestamp;
use economy_proto::redemption::v1 as pb;
use futures_util::future::join_all;
use tonic::Status;

use super::DOMAIN;
use crate::domain::import::{ImportStatus, ImportedOrder, code_hash, parse_external_id};
use crate::service::Redemption;
use crate::service::import::OrderImported;

/// Most rows in one call.
pub const MAX_ROWS: usize = 1000;
/// Rows of one call imported at once.
pub const ROWS_IN_FLIGHT: usize = 16;

/// Imports every row of `request`; the results in row order.
pub async fn import_orders(
    service: &Redemption,
    request: &pb::ImportOrdersRequest,
) -> Result<pb::ImportOrdersResponse, Status> {
    let mut violations = Violations::default();
    violations.check((1..=MAX_ROWS).contains(&request.rows.len()), "rows", "must hold 1-1000 rows");
    violations.finish(DOMAIN)?;
    let mut results = Vec::with_capacity(request.rows.len());
    for rows in request.rows.chunks(ROWS_IN_FLIGHT) {
        for result in join_all(rows.iter().map(|row| import_row(service, row))).await {
            results.push(result?);
        }
    }
    Ok(pb::ImportOrdersResponse { results })
}

/// One row's result; `Err` only for a failure that is not the row's fault.
async fn import_row(service: &Redemption, row: &pb::ImportOrderRow) -> Result<pb::ImportOrderResult, Status> {
    let outcome = match validate(row) {
        Ok(order) => service.import_order(&order).await.map_err(Status::from),
        Err(refusal) => Err(refusal),
    };
    let result = |outcome: pb::ImportOutcome, order_id: String| pb::ImportOrderResult {
        external_id: row.external_id.clone(),
        outcome: outcome.into(),
        order_id,
        ..Default::default()
    };
    match outcome {
        Ok(OrderImported::Created(id)) => Ok(result(pb::ImportOutcome::Created, id)),
        Ok(OrderImported::Unchanged(id)) => Ok(result(pb::ImportOutcome::Unchanged, id)),
        Ok(OrderImported::Conflict(message)) => Ok(pb::ImportOrderResult {
            reason: reasons::IMPORT_ROW_CONFLICT.to_owned(),
            message,
            ..result(pb::ImportOutcome::Refused, String::new())
        }),
        Err(status) if economy_kit::error::is_row_refusal(&status) => Ok(pb::ImportOrderResult {
            reason: reason(&status).unwrap_or_default(),
            message: status.message().to_owned(),
            ..result(pb::ImportOutcome::Refused, String::new())
        }),
        Err(status) => Err(status),
    }
}

fn instant(violations: &mut Violations, name: &str, value: Option<&prost_types::Timestamp>) -> Option<i64> {
    let millis = value.and_then(from_timestamp);
    violations.check(millis.is_some(), name, "is required (a valid timestamp)");
    millis
}

/// The row, validated: every bad field listed at once.
fn validate(row: &pb::ImportOrderRow) -> Result<ImportedOrder, Status> {
    let mut violations = Violations::default();
    let external_id = parse_external_id(&row.external_id).map_err(|error| violations.add("external_id", error)).ok();
    violations.check(uuid::Uuid::try_parse(&row.item_instance_id).is_ok(), "item_instance_id", "a UUID");
    violations.check(row.owner_user_id > 0, "owner_user_id", "must be a positive user id");
    let status = match pb::OrderStatus::try_from(row.status) {
        Ok(pb::OrderStatus::Pending) => Some(ImportStatus::Pending),
        Ok(pb::OrderStatus::Fulfilled) => Some(ImportStatus::Fulfilled),
        _ => {
            violations.add("status", "must be PENDING or FULFILLED");
            None
        }
    };
    let hash = code_hash(&row.code, &row.code_sha256).map_err(|error| violations.add("code", error)).ok();
    let created_at = instant(&mut violations, "created_at", row.created_at.as_ref());
    let expires_at = instant(&mut violations, "expires_at", row.expires_at.as_ref());
    violations.check(created_at < expires_at || expires_at.is_none(), "expires_at", "must be after created_at");
    let resolved_at = row.resolved_at.as_ref().and_then(from_timestamp);
    let fulfilled = status == Some(ImportStatus::Fulfilled);
    violations.check(resolved_at.is_some() == fulfilled, "resolved_at", "is required for FULFILLED, unset for PENDING");
    violations.check(row.redeemer_user_id >= 0, "redeemer_user_id", "must be 0 or a positive user id");
    violations.finish(DOMAIN)?;
    let (Some(external_id), Some(status), Some(code_hash), Some(created_at), Some(expires_at)) =
        (external_id, status, hash, created_at, expires_at)
    else {
        return Err(Status::internal("validated value missing"));
    };
    Ok(ImportedOrder {
        external_id,
        item_instance_id: row.item_instance_id.to_ascii_lowercase(),
        owner_user_id: row.owner_user_id,
        status,
        code_hash,
        created_at,
        expires_at,
        resolved_at,
        redeemer_user_id: (row.redeemer_user_id > 0).then_some(row.redeemer_user_id),
    })
}
