//! `economy.gateway.v1.OperationsService`: the gateway's operator tools, admin only —
//! the cross-service consistency check (`consistency`) and the reading and releasing of
//! idempotency records (`store::admin`).

use std::sync::Arc;

use economy_kit::audit::{self, AuditDraft};
use economy_kit::error::Violations;
use economy_kit::identity::roles;
use economy_kit::job_runs::{self, JobRuns};
use economy_kit::time::to_timestamp;
use economy_proto::gateway::v1 as pb;
use pb::operations_service_server::OperationsService;
use tonic::{Request, Response, Status};

use crate::DOMAIN;
use crate::consistency::{DEFAULT_GRACE_SECS, check, export};
use crate::error::GatewayError;
use crate::proxy::{Gateway, normalized_key};
use crate::store::Record;

/// Canonical operation of a release, the action of its audit record.
pub const RELEASE_OPERATION: &str = "GATEWAY_RELEASE_IDEMPOTENCY_RECORD";

/// The admin RPCs, sharing the proxy's state.
#[derive(Clone)]
pub struct Operations(pub Arc<Gateway>);

#[tonic::async_trait]
impl OperationsService for Operations {
    async fn list_job_runs(
        &self,
        request: Request<pb::ListJobRunsRequest>,
    ) -> Result<Response<pb::ListJobRunsResponse>, Status> {
        let (_, _permit) = self.0.admit(request.metadata(), roles::ADMIN).await?;
        let request = request.get_ref();
        let runs = JobRuns::new(self.0.store.db().clone());
        let (runs, next_page_token) =
            job_runs::answer(&runs, DOMAIN, &request.job, request.page_size, &request.page_token).await?;
        Ok(Response::new(pb::ListJobRunsResponse { runs, next_page_token }))
    }

    async fn check_consistency(
        &self,
        request: Request<pb::CheckConsistencyRequest>,
    ) -> Result<Response<pb::CheckConsistencyResponse>, Status> {
        let (_, _permit) = self.0.admit(request.metadata(), roles::ADMIN).await?;
        let grace = match request.get_ref().grace_seconds {
            seconds if seconds > 0 => seconds,
            _ => DEFAULT_GRACE_SECS,
        };
        let report = check(&self.0, grace.saturating_mul(1000)).await?;
        export(&report);
        Ok(Response::new(pb::CheckConsistencyResponse {
            findings: report.findings,
            checked: report.checked,
            item_statuses: report.item_statuses,
        }))
    }

    async fn get_idempotency_record(
        &self,
        request: Request<pb::GetIdempotencyRecordRequest>,
    ) -> Result<Response<pb::GetIdempotencyRecordResponse>, Status> {
        let (_, _permit) = self.0.admit(request.metadata(), roles::ADMIN).await?;
        let input = request.into_inner();
        let mut violations = Violations::default();
        let key = record_key(&mut violations, input.user_id, "idempotency_key", &input.idempotency_key);
        violations.finish(DOMAIN)?;
        let record = self.0.store.get(input.user_id, &key).await.map_err(GatewayError::from)?;
        let record = record.ok_or(GatewayError::RecordNotFound)?;
        Ok(Response::new(pb::GetIdempotencyRecordResponse { record: Some(to_proto(&record)) }))
    }

    async fn release_idempotency_record(
        &self,
        request: Request<pb::ReleaseIdempotencyRecordRequest>,
    ) -> Result<Response<pb::ReleaseIdempotencyRecordResponse>, Status> {
        let (caller, _permit) = self.0.admit(request.metadata(), roles::ADMIN).await?;
        let input = request.into_inner();
        let mut violations = Violations::default();
        let key = record_key(&mut violations, input.user_id, "record_key", &input.record_key);
        let own_key = input.idempotency_key.trim();
        violations.check(
            (1..=128).contains(&own_key.len()) && own_key.bytes().all(|byte| byte.is_ascii_graphic()),
            "idempotency_key",
            "must be 1-128 printable ASCII characters without spaces",
        );
        let reason = audit::reason(&mut violations, "reason", &input.reason);
        violations.finish(DOMAIN)?;
        let draft = AuditDraft {
            idempotency_key: own_key.to_owned(),
            actor: caller.actor(),
            action: RELEASE_OPERATION.to_owned(),
            target_type: "idempotency_record".to_owned(),
            target_id: format!("{}/{key}", input.user_id),
            reason: reason.unwrap_or_default(),
        };
        let released = self
            .0
            .store
            .release(input.user_id, &key, &draft, self.0.clock.now_millis())
            .await
            .map_err(GatewayError::from)?;
        if !released.replayed {
            tracing::warn!(user_id = input.user_id, actor = %draft.actor, "idempotency record released by an operator");
        }
        Ok(Response::new(pb::ReleaseIdempotencyRecordResponse {
            record: released.record.as_ref().map(to_proto),
            audit_record: Some(audit::to_proto(&released.audit)),
            replayed: released.replayed,
        }))
    }
}

/// Validates a record's `(user_id, key)`; returns the normalized key.
fn record_key(violations: &mut Violations, user_id: i64, field: &str, key: &str) -> String {
    violations.check(user_id > 0, "user_id", "must be a positive user id");
    let normalized = normalized_key(key.trim());
    violations.check(normalized.is_some(), field, "must be a UUID, optionally prefixed idem_");
    normalized.unwrap_or_default()
}

fn to_proto(record: &Record) -> pb::IdempotencyRecord {
    pb::IdempotencyRecord {
        user_id: record.user_id,
        idempotency_key: record.idempotency_key.clone(),
        canonical_operation: record.canonical_operation.clone(),
        method: record.method.clone(),
        status: record.status.clone(),
        request_id: record.request_id.clone(),
        business_event_id: record.business_event_id.clone(),
        lease_expires_at: (record.status == "processing").then(|| to_timestamp(record.lease_expires_at)),
        response_code: record.response_code.and_then(|code| i32::try_from(code).ok()).unwrap_or_default(),
        response_truncated: record.response_truncated != 0,
        failure_reason: record.failure_reason.clone().unwrap_or_default(),
        created_at: Some(to_timestamp(record.created_at)),
        updated_at: Some(to_timestamp(record.updated_at)),
        expires_at: Some(to_timestamp(record.expires_at)),
    }
}
