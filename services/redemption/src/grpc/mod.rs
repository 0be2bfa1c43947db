//! gRPC adapter of `economy.redemption.v1.RedemptionService`: each handler validates the
//! request, calls the flows in `service` and converts back.

mod compensation;
mod convert;
mod error;
mod import;

use std::sync::Arc;

use economy_kit::audit;
use economy_kit::error::Violations;
use economy_kit::identity::{caller, checked_idempotency_key};
use economy_kit::job_runs::{self, JobRuns};
use economy_proto::redemption::v1 as pb;
use pb::redemption_service_server::RedemptionService;
use tonic::{Request, Response, Status};

use crate::domain::RedemptionError;
use crate::service::Redemption;
use crate::store::OrderFilter;

/// `ErrorInfo.domain` of every redemption error.
pub const DOMAIN: &str = "economy.redemption";

/// The service implementation.
#[derive(Debug, Clone)]
pub struct RedemptionApi {
    service: Arc<Redemption>,
}

impl RedemptionApi {
    /// Serves `service`.
    pub fn new(service: Arc<Redemption>) -> Self {
        Self { service }
    }
}

fn check_id(violations: &mut Violations, field: &str, value: &str) {
    violations.check(uuid::Uuid::try_parse(value).is_ok(), field, "a UUID");
}

#[tonic::async_trait]
impl RedemptionService for RedemptionApi {
    async fn import_orders(
        &self,
        request: Request<pb::ImportOrdersRequest>,
    ) -> Result<Response<pb::ImportOrdersResponse>, Status> {
        let caller = caller(&request)?;
        if !caller.is_admin() {
            return Err(RedemptionError::PermissionDenied("the caller may not import orders".into()).into());
        }
        Ok(Response::new(import::import_orders(&self.service, request.get_ref()).await?))
    }

    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &request.get_ref().idempotency_key, &mut violations);
        let item_id = &request.get_ref().item_instance_id;
        check_id(&mut violations, "item_instance_id", item_id);
        violations.finish(DOMAIN)?;
        let created = self.service.create(&caller, &key, item_id).await?;
        Ok(Response::new(pb::CreateOrderResponse {
            order: Some(convert::order(&created.order)),
            code: created.code.map(|code| code.reveal()).unwrap_or_default(),
            replayed: created.replayed,
        }))
    }

    async fn fulfill_order(
        &self,
        request: Request<pb::FulfillOrderRequest>,
    ) -> Result<Response<pb::FulfillOrderResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &request.get_ref().idempotency_key, &mut violations);
        violations.finish(DOMAIN)?;
        let (order, replayed) = self.service.fulfill(&caller, &key, &request.get_ref().code).await?;
        Ok(Response::new(pb::FulfillOrderResponse {
            item_instance_id: order.item_instance_id.clone(),
            order: Some(convert::order(&order)),
            replayed,
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let mut violations = Violations::default();
        let key = checked_idempotency_key(&request, &message.idempotency_key, &mut violations);
        check_id(&mut violations, "order_id", &message.order_id);
        violations.check(message.reason.chars().count() <= 256, "reason", "at most 256 characters");
        violations.finish(DOMAIN)?;
        let (order, replayed) = self.service.cancel(&caller, &key, &message.order_id, &message.reason).await?;
        Ok(Response::new(pb::CancelOrderResponse { order: Some(convert::order(&order)), replayed }))
    }

    async fn reissue_code(
        &self,
        request: Request<pb::ReissueCodeRequest>,
    ) -> Result<Response<pb::ReissueCodeResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        check_id(&mut violations, "order_id", &request.get_ref().order_id);
        violations.finish(DOMAIN)?;
        let (order, code) = self.service.reissue(&caller, &request.get_ref().order_id).await?;
        Ok(Response::new(pb::ReissueCodeResponse { order: Some(convert::order(&order)), code: code.reveal() }))
    }

    async fn get_order(&self, request: Request<pb::GetOrderRequest>) -> Result<Response<pb::GetOrderResponse>, Status> {
        let caller = caller(&request)?;
        let mut violations = Violations::default();
        check_id(&mut violations, "order_id", &request.get_ref().order_id);
        violations.finish(DOMAIN)?;
        let order = self.service.get(&caller, &request.get_ref().order_id).await?;
        Ok(Response::new(pb::GetOrderResponse { order: Some(convert::order(&order)) }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let mut violations = Violations::default();
        let by_owner = message.owner_user_id > 0;
        let by_item = !message.item_instance_id.is_empty();
        violations.check(message.owner_user_id >= 0, "owner_user_id", "a positive user id, or 0");
        if by_item {
            check_id(&mut violations, "item_instance_id", &message.item_instance_id);
        }
        let known_status = pb::OrderStatus::try_from(message.status).is_ok();
        violations.check(known_status, "status", "an OrderStatus, or ORDER_STATUS_UNSPECIFIED for all");
        // Staff may list every order in one status (the consistency check's view).
        let by_status = message.status != 0 && caller.is_staff();
        violations.check(by_owner || by_item || by_status, "owner_user_id", "set owner_user_id or item_instance_id");
        violations.check((0..=convert::MAX_PAGE_SIZE).contains(&message.page_size), "page_size", "0..=500");
        if !message.page_token.is_empty() {
            check_id(&mut violations, "page_token", &message.page_token);
        }
        violations.finish(DOMAIN)?;
        let limit = if message.page_size == 0 { convert::DEFAULT_PAGE_SIZE } else { message.page_size };
        let filter = OrderFilter {
            owner_user_id: by_owner.then_some(message.owner_user_id),
            item_instance_id: by_item.then_some(message.item_instance_id.as_str()),
            status: convert::status_filter(message.status),
            before: (!message.page_token.is_empty()).then_some(message.page_token.as_str()),
            limit: i64::from(limit) + 1,
        };
        let mut orders = self.service.list(&caller, filter).await?;
        let next_page_token = match orders.len() > usize::try_from(limit).unwrap_or(0) {
            true => {
                orders.truncate(usize::try_from(limit).unwrap_or(0));
                orders.last().map(|order| order.id.clone()).unwrap_or_default()
            }
            false => String::new(),
        };
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders.iter().map(convert::order).collect(),
            next_page_token,
        }))
    }

    async fn reissue_code_on_behalf(
        &self,
        request: Request<pb::ReissueCodeOnBehalfRequest>,
    ) -> Result<Response<pb::ReissueCodeOnBehalfResponse>, Status> {
        let caller = caller(&request)?;
        let (key, reason) = compensation::reissue_on_behalf(&request)?;
        let order_id = &request.get_ref().order_id;
        let reissued = self.service.reissue_on_behalf(&caller, &key, order_id, &reason).await?;
        Ok(Response::new(pb::ReissueCodeOnBehalfResponse {
            order: Some(convert::order(&reissued.order)),
            code: reissued.code.map(|code| code.reveal()).unwrap_or_default(),
            audit_record: Some(audit::to_proto(&reissued.record)),
            replayed: reissued.replayed,
        }))
    }

    async fn redrive_outbox(
        &self,
        request: Request<pb::RedriveOutboxRequest>,
    ) -> Result<Response<pb::RedriveOutboxResponse>, Status> {
        let caller = caller(&request)?;
        let (key, target, reason) = compensation::redrive_outbox(&request)?;
        let redriven = self.service.redrive_outbox(&caller, &key, &target, &reason).await?;
        Ok(Response::new(pb::RedriveOutboxResponse {
            entry: Some(compensation::outbox_entry(&redriven.entry)),
            audit_record: Some(audit::to_proto(&redriven.record)),
            replayed: redriven.replayed,
        }))
    }

    async fn list_stuck_outbox(
        &self,
        request: Request<pb::ListStuckOutboxRequest>,
    ) -> Result<Response<pb::ListStuckOutboxResponse>, Status> {
        let caller = caller(&request)?;
        let entries = self.service.stuck_outbox(&caller, request.get_ref().older_than_seconds).await?;
        Ok(Response::new(pb::ListStuckOutboxResponse {
            entries: entries.iter().map(compensation::outbox_entry).collect(),
        }))
    }

    async fn list_job_runs(
        &self,
        request: Request<pb::ListJobRunsRequest>,
    ) -> Result<Response<pb::ListJobRunsResponse>, Status> {
        if !caller(&request)?.is_admin() {
            return Err(RedemptionError::PermissionDenied("only admins may read job runs".into()).into());
        }
        let request = request.get_ref();
        let runs = JobRuns::new(self.service.store.db().clone());
        let (runs, next_page_token) =
            job_runs::answer(&runs, DOMAIN, &request.job, request.page_size, &request.page_token).await?;
        Ok(Response::new(pb::ListJobRunsResponse { runs, next_page_token }))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        let caller = caller(&request)?;
        if !caller.is_admin() {
            return Err(RedemptionError::PermissionDenied("only admins may read audit records".into()).into());
        }
        let query = compensation::audit_query(request.get_ref())?;
        let page = self.service.store.audit_records(&query).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: page.records.iter().map(audit::to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
