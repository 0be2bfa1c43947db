//! The compensation tool's requests (issue 6): validation (every field at once,
//! `INVALID_ARGUMENT` / `VALIDATION_FAILED`; a non-blank reason of at most 500
//! characters) and the conversion of escrow returns.

use economy_kit::audit::{self, AuditQuery};
use economy_kit::error::Violations;
use economy_kit::identity::checked_idempotency_key;
use economy_kit::time::to_timestamp;
use economy_proto::market::v1 as pb;
use tonic::{Request, Status};

use super::{DOMAIN, check_id};
use crate::domain::compensation::{OutboxEntry, OutboxStatus, OutboxTarget};

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
        Some(pb::redrive_outbox_request::Target::ListingId(id)) => {
            check_id(&mut violations, "listing_id", id);
            Some(OutboxTarget::Listing(id.clone()))
        }
        None => {
            violations.add("target", "set outbox_id or listing_id");
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

/// Domain escrow return -> proto.
pub fn outbox_entry(entry: &OutboxEntry) -> pb::OutboxEntry {
    pb::OutboxEntry {
        id: entry.id.clone(),
        listing_id: entry.listing_id.clone(),
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
        delivered_at: (entry.delivered_at != 0).then(|| to_timestamp(entry.delivered_at)),
    }
}
