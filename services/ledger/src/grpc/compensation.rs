//! Validation of the compensation tools' requests (issue 6): every field checked at once
//! (`INVALID_ARGUMENT` / `VALIDATION_FAILED`), a non-blank reason of at most 500
//! characters required, the idempotency key taken from the body or the gateway's business
//! event (`economy_kit::identity::idempotency_key`).

use economy_kit::audit::{self, AuditDraft, AuditQuery};
use economy_kit::error::Violations;
use economy_proto::ledger::v1 as pb;
use tonic::Status;

use super::convert::{account, code, entity_id, key};
use super::{DOMAIN, validated};
use crate::domain::commands::WritePlan;
use crate::domain::compensation::{ForceReleaseHold, RecalculateBalance};

/// `RecalculateBalance`: the command and its audit draft by `actor`.
pub fn recalculate(
    request: &pb::RecalculateBalanceRequest,
    key_text: &str,
    actor: &str,
) -> Result<(RecalculateBalance, AuditDraft), Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let account = account(&mut violations, "account", request.account.as_ref());
    let asset = code(&mut violations, "asset_code", &request.asset_code);
    let reason = audit::reason(&mut violations, "reason", &request.reason);
    let ((idempotency_key, account), (asset, reason)) =
        validated(violations, idempotency_key.zip(account).zip(asset.zip(reason)))?;
    let command = RecalculateBalance { account, asset, reason };
    let draft = command.draft(&idempotency_key, actor);
    Ok((command, draft))
}

/// `ForceReleaseHold`: the releasing entry's plan and the audit draft by `actor`.
pub fn force_release(
    request: &pb::ForceReleaseHoldRequest,
    key_text: &str,
    actor: &str,
) -> Result<(WritePlan, AuditDraft), Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let hold = entity_id(&mut violations, "hold_id", &request.hold_id);
    let reason = audit::reason(&mut violations, "reason", &request.reason);
    let (idempotency_key, (hold, reason)) = validated(violations, idempotency_key.zip(hold.zip(reason)))?;
    let command = ForceReleaseHold { hold, reason };
    let draft = command.draft(&idempotency_key, actor);
    Ok((command.plan(idempotency_key, actor), draft))
}

/// `ListAuditRecords`.
pub fn audit_query(request: &pb::ListAuditRecordsRequest) -> Result<AuditQuery, Status> {
    let mut violations = Violations::default();
    let query = audit::query(&mut violations, &request.target_id, request.page_size, &request.page_token);
    violations.finish(DOMAIN)?;
    Ok(query)
}
