//! The compensation tools' requests (issue 6): validation (every field at once,
//! `INVALID_ARGUMENT` / `VALIDATION_FAILED`; a non-blank reason of at most 500
//! characters) and the conversion of outbox rows.

use economy_kit::audit::{self, AuditQuery};
use economy_kit::error::Violations;
use economy_kit::identity::checked_idempotency_key;
use economy_kit::time::to_timestamp;
use economy_proto::redemption::v1 as pb;
use tonic::{Request, Status};

use super::{DOMAIN, check_id};
use crate::domain::compensation::{OutboxEntry, OutboxStatus, OutboxTarget};

/// `ReissueCodeOnBehalf`: `(key, order id, reason)`.
pub fn reissue_on_behalf(request: &Request<pb::ReissueCodeOnBehalfRequest>) -> Result<(String, String), Status> {
    let message = request.get_ref();
    let mut violations = Violations::default();
    let key = checked_idempotency_key(request, &message.idempotency_key, &mut violations);
    check_id(&mut violations, "order_id", &message.order_id);
    let reason = audit::reason(&mut violations, "reason", &message.reason);
    violations.finish(DOMAIN)?;
    Ok((key, reason.unwrap_or_default()))
}

/// `RedriveOutbox`: `(key, target, reason)`.
pub fn redrive_outbox(request: &Request<pb::RedriveOutboxRequest>) -> Result<(String, OutboxTarget, String), Status> {
    let message = request.get_ref();
    let mut violations = Violations::default();
    let key = checked_idempotency_key(request, &message.idempotency_key, &mut violations);
    let target = match &message.target {
        Some(pb::redrive_outbox_request::Target::OutboxId(id)) => {
            check_id(&mut violations, "outbox_id", id);
            Some(OutboxTarget::Row(id.clone()))
        }
        Some(pb::redrive_outbox_request::Target::OrderId(id)) => {
            check_id(&mut violations, "order_id", id);
            Some(OutboxTarget::Order(id.clone()))
        }
        None => {
            violations.add("target", "set outbox_id or order_id");
            None
        }
    };
    let reason = audit::reason(&mut violations, "reason", &message.reason);
    violations.finish(DOMAIN)?;
    let target = target.ok_or_else(|| Status::internal("validated target missing"))?;
    Ok((key, target, reason.unwrap_or_default()))
}

/// `ListAuditRecords`.
pub fn audit_query(request: &pb::ListAuditRecordsRequest) -> Result<AuditQuery, Status> {
    let mut violations = Violations::default();
    let query = audit::query(&mut violations, &request.target_id, request.page_size, &request.page_token);
    violations.finish(DOMAIN)?;
    Ok(query)
}

/// Domain outbox row -> proto.
pub fn outbox_entry(entry: &OutboxEntry) -> pb::OutboxEntry {
    pb::OutboxEntry {
        id: entry.id.clone(),
        order_id: entry.order_id.clone(),
        action: entry.action.clone(),
        item_instance_id: entry.item_instance_id.clone(),
        status: match entry.status {
            OutboxStatus::Pending => pb::OutboxStatus::Pending,
            OutboxStatus::Delivered => pb::OutboxStatus::Delivered,
            OutboxStatus::Dead => pb::OutboxStatus::Dead,
        }
        .into(),
        attempts: entry.attempts,
        last_error: entry.last_error.clone(),
        next_attempt_at: Some(to_timestamp(entry.next_attempt_at)),
        created_at: Some(to_timestamp(entry.created_at)),
        delivered_at: entry.delivered_at.map(to_timestamp),
    }
}
