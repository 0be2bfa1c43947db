//! Validation of the compensation tool's requests (issue 6): every field checked at once
//! (`INVALID_ARGUMENT` / `VALIDATION_FAILED`), a non-blank reason of at most 500
//! characters required.

use economy_kit::audit::{self, AuditDraft, AuditQuery};
use economy_kit::error::Violations;
use economy_proto::items::v1 as pb;
use tonic::Status;

use super::convert::{item_id, key};
use super::{DOMAIN, validated};
use crate::domain::compensation::ForceUnlockItem;
use crate::domain::transition::TransitionPlan;

/// `ForceUnlockItem`: the transition and its audit draft by `actor`; `key_text` is the
/// request's key or the gateway's business event id.
pub fn force_unlock(
    request: &pb::ForceUnlockItemRequest,
    key_text: &str,
    actor: &str,
) -> Result<(TransitionPlan, AuditDraft), Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let item = item_id(&mut violations, "item_instance_id", &request.item_instance_id);
    let reason = audit::reason(&mut violations, "reason", &request.reason);
    let (idempotency_key, (item, reason)) = validated(violations, idempotency_key.zip(item.zip(reason)))?;
    Ok(ForceUnlockItem { item, reason }.plan(idempotency_key, actor))
}

/// `ListAuditRecords`.
pub fn audit_query(request: &pb::ListAuditRecordsRequest) -> Result<AuditQuery, Status> {
    let mut violations = Violations::default();
    let query = audit::query(&mut violations, &request.target_id, request.page_size, &request.page_token);
    violations.finish(DOMAIN)?;
    Ok(query)
}
