//! gRPC adapter of `economy.items.v1.ItemService`: each handler authorizes the signed
//! caller, validates the request into a domain plan, calls the store, and converts back.
//!
//! Authorization (docs/items.md; the gateway checks roles per method, and services do
//! object-level authorization themselves, docs/gateway.md):
//! - templates: admins define; every authenticated caller reads;
//! - `GrantItem`: admins and internal services;
//! - reads of instances, lists and histories: the owner, admins and services; other
//!   users get `PERMISSION_DENIED`;
//! - events by correlation id: admins and services all of them, a user those whose
//!   previous or new owner they are (someone else's events are never shown, not refused);
//! - `LockItem`, `UnlockItem`, `TransferItem` and `ConsumeItem` with a holder: internal
//!   services (market, redemption) and admins only. Users never hold locks: a lock held
//!   by a user would let them hand the item to anyone, bypassing the market's payment and
//!   the redemption's staff check; they list or redeem through those services instead;
//! - `ConsumeItem` without a holder: the owner of an available consumable instance (or
//!   an admin or service acting for them);
//! - `WatchItemEvents`: admins and services any events; a user only with
//!   `owner_user_id` = themself (the events that gave them or took from them an item);
//! - `RevokeItem`: admins;
//! - `ForceUnlockItem` (a compensation tool, audited), `ListAuditRecords` and
//!   `ListJobRuns` (docs/operations.md, "Background jobs"): admins;
//! - `ImportItems` (docs/import.md): admins.

mod compensation;
mod convert;
mod error;
mod import;
mod report;
mod requests;
mod watch;

use economy_kit::audit;
use economy_kit::error::Violations;
use economy_kit::identity::{Caller, caller, idempotency_key};
use economy_kit::job_runs::{self, JobRuns};
use economy_kit::time::SharedClock;
use economy_proto::items::v1 as pb;
use pb::item_service_server::ItemService;
use tonic::{Request, Response, Status};

use crate::domain::ItemError;
use crate::domain::ids::UserId;
use crate::domain::item::Item;
use crate::store::{Applied, ItemStore};
pub use economy_kit::watch::WatchOptions;
pub use report::{DEFAULT_STALE_LOCK_DAYS, ReportOptions, days};

/// `ErrorInfo.domain` of every items error.
pub const DOMAIN: &str = "economy.items";
/// The service implementation.
#[derive(Debug, Clone)]
pub struct ItemsApi {
    store: ItemStore,
    clock: SharedClock,
    watch: WatchOptions,
    reports: ReportOptions,
}

impl ItemsApi {
    /// Serves `store`; `clock` is the "now" of every change; `watch` sets the event streams.
    pub fn new(store: ItemStore, clock: SharedClock, watch: WatchOptions) -> Self {
        Self { store, clock, watch, reports: ReportOptions::default() }
    }

    /// The same API with `reports` deciding which locks `GetItemReport` calls stale.
    #[must_use]
    pub fn with_reports(mut self, reports: ReportOptions) -> Self {
        self.reports = reports;
        self
    }

    /// The instance, if `caller` may see it: `ITEM_NOT_FOUND`, `PERMISSION_DENIED`.
    async fn visible_item(&self, caller: &Caller, id: &str) -> Result<Item, Status> {
        let item = self.store.item(id).await?.ok_or_else(|| ItemError::ItemNotFound(id.to_owned()))?;
        require(caller.may_act_for(item.owner.get()), "see another user's items")?;
        Ok(item)
    }
}

fn require(allowed: bool, what: &str) -> Result<(), Status> {
    if allowed { Ok(()) } else { Err(ItemError::PermissionDenied(format!("caller may not {what}")).into()) }
}

fn validated<T>(violations: Violations, value: Option<T>) -> Result<T, Status> {
    violations.finish(DOMAIN)?;
    value.ok_or_else(|| Status::internal("validated value missing"))
}

/// `(item, event, replayed)` of a write's response.
fn outcome(applied: &Applied) -> (Option<pb::ItemInstance>, Option<pb::ItemEvent>, bool) {
    (Some(convert::item(&applied.item)), Some(convert::event(&applied.event)), applied.replayed)
}

#[tonic::async_trait]
impl ItemService for ItemsApi {
    async fn define_template(
        &self,
        request: Request<pb::DefineTemplateRequest>,
    ) -> Result<Response<pb::DefineTemplateResponse>, Status> {
        require(caller(&request)?.is_admin(), "define templates")?;
        let template = requests::template(request.get_ref())?;
        let (stored, created) = self.store.define_template(&template, self.clock.now_millis()).await?;
        Ok(Response::new(pb::DefineTemplateResponse { template: Some(convert::template(&stored)), created }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        caller(&request)?;
        let mut violations = Violations::default();
        let code = convert::code(&mut violations, "code", &request.get_ref().code);
        let code = validated(violations, code)?;
        let template = self.store.template(code.as_str()).await?;
        Ok(Response::new(pb::GetTemplateResponse { template: Some(convert::template(&template)) }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        caller(&request)?;
        let templates = self.store.templates().await?;
        Ok(Response::new(pb::ListTemplatesResponse { templates: templates.iter().map(convert::template).collect() }))
    }

    async fn grant_item(
        &self,
        request: Request<pb::GrantItemRequest>,
    ) -> Result<Response<pb::GrantItemResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "grant items")?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key);
        let plan = requests::grant(request.get_ref(), &key, &caller.actor())?;
        let (item, event, replayed) = outcome(&self.store.grant(&plan, self.clock.now_millis()).await?);
        if !replayed {
            crate::metrics::granted();
        }
        Ok(Response::new(pb::GrantItemResponse { item, event, replayed }))
    }

    async fn get_item(&self, request: Request<pb::GetItemRequest>) -> Result<Response<pb::GetItemResponse>, Status> {
        let caller = caller(&request)?;
        let id = requests::item("item_instance_id", &request.get_ref().item_instance_id)?;
        let item = self.visible_item(&caller, id.as_str()).await?;
        let template = self.store.template(item.template.as_str()).await?;
        Ok(Response::new(pb::GetItemResponse {
            item: Some(convert::item(&item)),
            template: Some(convert::template(&template)),
        }))
    }

    async fn list_items(
        &self,
        request: Request<pb::ListItemsRequest>,
    ) -> Result<Response<pb::ListItemsResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let owner = match message.owner_user_id {
            0 => caller.user_id().unwrap_or(0),
            owner => owner,
        };
        let list = requests::list_items(message, owner)?;
        require(caller.may_act_for(owner), "list another user's items")?;
        let response = match list {
            requests::ItemList::Items(filter, page) => {
                let items = self.store.items(&filter, &page).await?;
                let last = items.last().map(|item| item.id.to_string());
                pb::ListItemsResponse {
                    next_page_token: convert::next_token(items.len(), page.limit, last),
                    items: items.iter().map(convert::item).collect(),
                    groups: Vec::new(),
                }
            }
            requests::ItemList::Groups(filter, page) => {
                let groups = self.store.groups(&filter, &page).await?;
                let last = groups.last().map(|group| convert::group_token(&group.key));
                pb::ListItemsResponse {
                    next_page_token: convert::next_token(groups.len(), page.limit, last),
                    items: Vec::new(),
                    groups: groups.iter().map(convert::group).collect(),
                }
            }
        };
        Ok(Response::new(response))
    }

    async fn list_locked_items(
        &self,
        request: Request<pb::ListLockedItemsRequest>,
    ) -> Result<Response<pb::ListLockedItemsResponse>, Status> {
        require(caller(&request)?.is_privileged(), "list locked items")?;
        let page = requests::list_locked(request.get_ref())?;
        let items = self.store.locked_items(&request.get_ref().holder_prefix, &page).await?;
        let last = items.last().map(|item| item.id.to_string());
        Ok(Response::new(pb::ListLockedItemsResponse {
            next_page_token: convert::next_token(items.len(), page.limit, last),
            items: items.iter().map(convert::item).collect(),
        }))
    }

    async fn get_item_report(
        &self,
        request: Request<pb::GetItemReportRequest>,
    ) -> Result<Response<pb::GetItemReportResponse>, Status> {
        require(caller(&request)?.is_privileged(), "read the items report")?;
        let limit = requests::report_limit(request.get_ref())?;
        let stale_before = self.reports.stale_before(self.clock.now_millis());
        let report = self.store.report(stale_before, limit).await?;
        Ok(Response::new(report::response(&report, stale_before)))
    }

    async fn list_item_events(
        &self,
        request: Request<pb::ListItemEventsRequest>,
    ) -> Result<Response<pb::ListItemEventsResponse>, Status> {
        let caller = caller(&request)?;
        let (events, limit, last) = match requests::list_events(request.get_ref())? {
            requests::EventList::Item(id, page) => {
                self.visible_item(&caller, id.as_str()).await?;
                let events = self.store.events(id.as_str(), &page).await?;
                let last = events.last().map(|event| event.version.to_string());
                (events, page.limit, last)
            }
            requests::EventList::Correlation(id, page) => {
                let viewer = if caller.is_privileged() { None } else { Some(caller.user_id().unwrap_or(0)) };
                let events = self.store.correlated_events(&id, viewer, &page).await?;
                let last = events.last().map(|event| event.id.clone());
                (events, page.limit, last)
            }
        };
        Ok(Response::new(pb::ListItemEventsResponse {
            next_page_token: convert::next_token(events.len(), limit, last),
            events: events.iter().map(convert::event).collect(),
        }))
    }

    type WatchItemEventsStream = watch::ItemEventStream;

    async fn watch_item_events(
        &self,
        request: Request<pb::WatchItemEventsRequest>,
    ) -> Result<Response<Self::WatchItemEventsStream>, Status> {
        let caller = caller(&request)?;
        let (filter, start) = requests::watch(request.get_ref())?;
        let own = filter.owner.is_some_and(|owner| caller.may_act_for(owner.get()));
        require(caller.is_privileged() || own, "watch other users' item events")?;
        let stream = watch::open(self.store.clone(), filter, start, &self.watch).await?;
        Ok(Response::new(stream))
    }

    async fn lock_item(&self, request: Request<pb::LockItemRequest>) -> Result<Response<pb::LockItemResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "lock items")?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key);
        let plan = requests::lock(request.get_ref(), &key, &caller.actor())?;
        let (item, event, replayed) = outcome(&self.store.transition(&plan, self.clock.now_millis()).await?);
        Ok(Response::new(pb::LockItemResponse { item, event, replayed }))
    }

    async fn unlock_item(
        &self,
        request: Request<pb::UnlockItemRequest>,
    ) -> Result<Response<pb::UnlockItemResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "unlock items")?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key);
        let plan = requests::unlock(request.get_ref(), &key, &caller.actor())?;
        let (item, event, replayed) = outcome(&self.store.transition(&plan, self.clock.now_millis()).await?);
        Ok(Response::new(pb::UnlockItemResponse { item, event, replayed }))
    }

    async fn transfer_item(
        &self,
        request: Request<pb::TransferItemRequest>,
    ) -> Result<Response<pb::TransferItemResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "transfer items")?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key);
        let plan = requests::transfer(request.get_ref(), &key, &caller.actor())?;
        let (item, event, replayed) = outcome(&self.store.transition(&plan, self.clock.now_millis()).await?);
        Ok(Response::new(pb::TransferItemResponse { item, event, replayed }))
    }

    async fn consume_item(
        &self,
        request: Request<pb::ConsumeItemRequest>,
    ) -> Result<Response<pb::ConsumeItemResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let by_holder = !message.holder.is_empty();
        require(!by_holder || caller.is_privileged(), "consume items as a lock holder")?;
        let acting_user =
            if caller.is_privileged() { None } else { caller.user_id().and_then(|id| UserId::parse(id).ok()) };
        let key = idempotency_key(&request, &message.idempotency_key);
        let plan = requests::consume(message, &key, &caller.actor(), acting_user)?;
        if acting_user.is_some() {
            self.visible_item(&caller, plan.item.as_str()).await?;
        }
        let (item, event, replayed) = outcome(&self.store.transition(&plan, self.clock.now_millis()).await?);
        Ok(Response::new(pb::ConsumeItemResponse { item, event, replayed }))
    }

    async fn revoke_item(
        &self,
        request: Request<pb::RevokeItemRequest>,
    ) -> Result<Response<pb::RevokeItemResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_privileged(), "revoke items")?;
        let key = idempotency_key(&request, &request.get_ref().idempotency_key);
        let plan = requests::revoke(request.get_ref(), &key, &caller.actor())?;
        let (item, event, replayed) = outcome(&self.store.transition(&plan, self.clock.now_millis()).await?);
        Ok(Response::new(pb::RevokeItemResponse { item, event, replayed }))
    }

    async fn force_unlock_item(
        &self,
        request: Request<pb::ForceUnlockItemRequest>,
    ) -> Result<Response<pb::ForceUnlockItemResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_admin(), "force-unlock items")?;
        let key = economy_kit::identity::idempotency_key(&request, &request.get_ref().idempotency_key);
        let (plan, draft) = compensation::force_unlock(request.get_ref(), &key, &caller.actor())?;
        let (applied, record) = self.store.audited_transition(&plan, &draft, self.clock.now_millis()).await?;
        if !applied.replayed {
            record.log_applied();
        }
        let (item, event, replayed) = outcome(&applied);
        Ok(Response::new(pb::ForceUnlockItemResponse {
            item,
            event,
            audit_record: Some(audit::to_proto(&record)),
            replayed,
        }))
    }

    async fn list_job_runs(
        &self,
        request: Request<pb::ListJobRunsRequest>,
    ) -> Result<Response<pb::ListJobRunsResponse>, Status> {
        require(caller(&request)?.is_admin(), "read job runs")?;
        let request = request.get_ref();
        let runs = JobRuns::new(self.store.db().clone());
        let (runs, next_page_token) =
            job_runs::answer(&runs, DOMAIN, &request.job, request.page_size, &request.page_token).await?;
        Ok(Response::new(pb::ListJobRunsResponse { runs, next_page_token }))
    }

    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        require(caller(&request)?.is_admin(), "read audit records")?;
        let query = compensation::audit_query(request.get_ref())?;
        let page = self.store.audit_records(&query).await?;
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: page.records.iter().map(audit::to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn import_items(
        &self,
        request: Request<pb::ImportItemsRequest>,
    ) -> Result<Response<pb::ImportItemsResponse>, Status> {
        let caller = caller(&request)?;
        require(caller.is_admin(), "import items")?;
        let now = self.clock.now_millis();
        Ok(Response::new(import::import_items(&self.store, request.get_ref(), &caller.actor(), now).await?))
    }
}
