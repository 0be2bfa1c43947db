//! Validation of inbound requests into domain values and plans (docs/errors.md: bad input
//! gets `INVALID_ARGUMENT` / `VALIDATION_FAILED` listing every bad field).

use economy_kit::error::Violations;
use economy_kit::watch::Start;
use economy_proto::items::v1 as pb;
use tonic::Status;

use super::convert::{
    self, business_type, code, correlation_id, field, holder, instant, item_id, key, metadata, text, user,
};
use super::validated;
use crate::domain::grant::{GRANT_BUSINESS_TYPE, Grant, GrantPlan};
use crate::domain::group::GroupKey;
use crate::domain::ids::{CorrelationId, IdempotencyKey, ItemId, UserId};
use crate::domain::template::{Template, parse_validity};
use crate::domain::transition::{Command, TransitionPlan};
use crate::domain::watch::WatchFilter;
use crate::store::{ItemFilter, Page};

const MAX_REASON: usize = 500;
const MAX_DISPLAY_NAME: usize = 128;

/// `DefineTemplate`.
pub fn template(request: &pb::DefineTemplateRequest) -> Result<Template, Status> {
    let mut violations = Violations::default();
    violations.check(request.template.is_some(), "template", "is required");
    let input = request.template.clone().unwrap_or_default();
    let code = code(&mut violations, "template.code", &input.code);
    let display_name = text(&mut violations, "template.display_name", &input.display_name, MAX_DISPLAY_NAME, true);
    let kind = field(&mut violations, "template.kind", convert::item_kind(input.kind));
    let validity =
        field(&mut violations, "template.default_validity_seconds", parse_validity(input.default_validity_seconds));
    let metadata = metadata(&mut violations, "template.metadata", &input.metadata);
    let ((code, display_name), ((kind, validity), metadata)) =
        validated(violations, code.zip(display_name).zip(kind.zip(validity).zip(metadata)))?;
    Ok(Template {
        code,
        display_name,
        kind,
        default_validity_secs: validity,
        redeemable: input.redeemable,
        consumable: input.consumable,
        metadata,
        created_at: 0,
        updated_at: 0,
    })
}

/// `GrantItem`; `key_text` is the request's key or the gateway's business event id.
pub fn grant(request: &pb::GrantItemRequest, key_text: &str, actor: &str) -> Result<GrantPlan, Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let owner = user(&mut violations, "owner_user_id", request.owner_user_id);
    let template = code(&mut violations, "template_code", &request.template_code);
    let expires_at = instant(&mut violations, "expires_at", request.expires_at.as_ref());
    let metadata = metadata(&mut violations, "metadata", &request.metadata);
    let business = business_type(&mut violations, &request.business_type, GRANT_BUSINESS_TYPE);
    let reason = text(&mut violations, "reason", &request.reason, MAX_REASON, false);
    let correlation = correlation_id(&mut violations, &request.correlation_id);
    let ((idempotency_key, (owner, template)), ((expires_at, metadata), ((business, reason), correlation))) =
        validated(
            violations,
            idempotency_key
                .zip(owner.zip(template))
                .zip(expires_at.zip(metadata).zip(business.zip(reason).zip(correlation))),
        )?;
    let plan = Grant { owner, template, expires_at, metadata }.plan(idempotency_key, actor, business, reason);
    Ok(GrantPlan { meta: plan.meta.correlated(correlation), ..plan })
}

/// The parts every change request shares.
struct Common<'a> {
    key: &'a str,
    item: &'a str,
    business_type: &'a str,
    reason: &'a str,
    reason_required: bool,
    /// Empty for the requests without a correlation id.
    correlation_id: &'a str,
}

/// Validates the shared parts and the command, then plans it.
fn change(
    mut violations: Violations,
    common: Common<'_>,
    command: Option<Command>,
    actor: &str,
) -> Result<TransitionPlan, Status> {
    let idempotency_key = key(&mut violations, "idempotency_key", common.key);
    let item = item_id(&mut violations, "item_instance_id", common.item);
    let reason = text(&mut violations, "reason", common.reason, MAX_REASON, common.reason_required);
    let default = command.as_ref().map_or("ITEM_CHANGE", Command::default_business_type);
    let business = business_type(&mut violations, common.business_type, default);
    let correlation = correlation_id(&mut violations, common.correlation_id);
    let ((idempotency_key, item), ((business, reason), (command, correlation))): ((IdempotencyKey, ItemId), _) =
        validated(violations, idempotency_key.zip(item).zip(business.zip(reason).zip(command.zip(correlation))))?;
    let plan = command.plan(item, idempotency_key, actor, business, reason);
    Ok(TransitionPlan { meta: plan.meta.correlated(correlation), ..plan })
}

/// `LockItem`.
pub fn lock(request: &pb::LockItemRequest, key_text: &str, actor: &str) -> Result<TransitionPlan, Status> {
    let mut violations = Violations::default();
    let holder = holder(&mut violations, "holder", &request.holder);
    let lock_expires_at = instant(&mut violations, "lock_expires_at", request.lock_expires_at.as_ref());
    let expected_owner = match request.expected_owner_user_id {
        0 => Some(None),
        id => user(&mut violations, "expected_owner_user_id", id).map(Some),
    };
    let command = holder
        .zip(lock_expires_at.zip(expected_owner))
        .map(|(holder, (lock_expires_at, expected_owner))| Command::Lock { holder, lock_expires_at, expected_owner });
    let common = Common {
        key: key_text,
        item: &request.item_instance_id,
        business_type: &request.business_type,
        reason: &request.reason,
        reason_required: false,
        correlation_id: "",
    };
    change(violations, common, command, actor)
}

/// `UnlockItem`.
pub fn unlock(request: &pb::UnlockItemRequest, key_text: &str, actor: &str) -> Result<TransitionPlan, Status> {
    let mut violations = Violations::default();
    let command = holder(&mut violations, "holder", &request.holder).map(|holder| Command::Unlock { holder });
    let common = Common {
        key: key_text,
        item: &request.item_instance_id,
        business_type: &request.business_type,
        reason: &request.reason,
        reason_required: false,
        correlation_id: "",
    };
    change(violations, common, command, actor)
}

/// `TransferItem`.
pub fn transfer(request: &pb::TransferItemRequest, key_text: &str, actor: &str) -> Result<TransitionPlan, Status> {
    let mut violations = Violations::default();
    let holder = holder(&mut violations, "holder", &request.holder);
    let to = user(&mut violations, "to_owner_user_id", request.to_owner_user_id);
    let command = holder.zip(to).map(|(holder, to)| Command::Transfer { holder, to });
    let common = Common {
        key: key_text,
        item: &request.item_instance_id,
        business_type: &request.business_type,
        reason: &request.reason,
        reason_required: false,
        correlation_id: "",
    };
    change(violations, common, command, actor)
}

/// `ConsumeItem`; `acting_user` is the plain user consuming their own item (`None` for
/// admins and services).
pub fn consume(
    request: &pb::ConsumeItemRequest,
    key_text: &str,
    actor: &str,
    acting_user: Option<UserId>,
) -> Result<TransitionPlan, Status> {
    let mut violations = Violations::default();
    let holder = match request.holder.as_str() {
        "" => Some(None),
        value => holder(&mut violations, "holder", value).map(Some),
    };
    let command = holder.map(|holder| Command::Consume { holder, acting_user });
    let common = Common {
        key: key_text,
        item: &request.item_instance_id,
        business_type: &request.business_type,
        reason: &request.reason,
        reason_required: false,
        correlation_id: "",
    };
    change(violations, common, command, actor)
}

/// `RevokeItem` (the reason is required).
pub fn revoke(request: &pb::RevokeItemRequest, key_text: &str, actor: &str) -> Result<TransitionPlan, Status> {
    let common = Common {
        key: key_text,
        item: &request.item_instance_id,
        business_type: &request.business_type,
        reason: &request.reason,
        reason_required: true,
        correlation_id: &request.correlation_id,
    };
    change(Violations::default(), common, Some(Command::Revoke), actor)
}

/// The instance named by a read request.
pub fn item(name: &str, value: &str) -> Result<ItemId, Status> {
    let mut violations = Violations::default();
    let id = item_id(&mut violations, name, value);
    validated(violations, id)
}

/// A list of one owner's instances: the filter and either an item or a group page.
pub enum ItemList {
    /// Newest first.
    Items(ItemFilter, Page<String>),
    /// Grouped.
    Groups(ItemFilter, Page<GroupKey>),
}

/// `ListItems`; `owner` is already resolved (0 -> the calling user) and authorized.
pub fn list_items(request: &pb::ListItemsRequest, owner: i64) -> Result<ItemList, Status> {
    let mut violations = Violations::default();
    let owner = user(&mut violations, "owner_user_id", owner);
    let statuses = convert::status_filter(&mut violations, &request.statuses);
    let filter = owner.zip(statuses).map(|(owner, statuses)| ItemFilter { owner, statuses });
    if request.grouped {
        let page = convert::group_page(&mut violations, request.page_size, &request.page_token);
        let (filter, page) = validated(violations, filter.zip(page))?;
        Ok(ItemList::Groups(filter, page))
    } else {
        let page = convert::item_page(&mut violations, request.page_size, &request.page_token);
        let (filter, page) = validated(violations, filter.zip(page))?;
        Ok(ItemList::Items(filter, page))
    }
}

/// `ListLockedItems`: a holder prefix (1-100 characters) and a page of ids.
pub fn list_locked(request: &pb::ListLockedItemsRequest) -> Result<Page<String>, Status> {
    let mut violations = Violations::default();
    let prefix = &request.holder_prefix;
    violations.check((1..=100).contains(&prefix.len()), "holder_prefix", "1-100 characters");
    let page = convert::item_page(&mut violations, request.page_size, &request.page_token);
    validated(violations, page)
}

/// `GetItemReport`: how many stale locks to list, 0..=1000 (0 means 100).
pub fn report_limit(request: &pb::GetItemReportRequest) -> Result<i64, Status> {
    let mut violations = Violations::default();
    let limit = if request.stale_limit == 0 { 100 } else { request.stale_limit };
    let valid = (1..=1000).contains(&limit);
    violations.check(valid, "stale_limit", "must be between 0 and 1000");
    validated(violations, valid.then_some(i64::from(limit)))
}

/// Which events a `ListItemEvents` lists.
pub enum EventList {
    /// One instance's history; the cursor is a version.
    Item(ItemId, Page<i64>),
    /// Every event of one business event; the cursor is an event id.
    Correlation(CorrelationId, Page<String>),
}

/// `ListItemEvents`: exactly one of `item_instance_id` and `correlation_id`, and the page.
pub fn list_events(request: &pb::ListItemEventsRequest) -> Result<EventList, Status> {
    let mut violations = Violations::default();
    let (item, correlation) = (&request.item_instance_id, &request.correlation_id);
    if item.is_empty() == correlation.is_empty() {
        for name in ["item_instance_id", "correlation_id"] {
            violations.add(name, "exactly one of item_instance_id and correlation_id must be set");
        }
        return validated(violations, None);
    }
    let list = if correlation.is_empty() {
        let id = item_id(&mut violations, "item_instance_id", item);
        let page = convert::event_page(&mut violations, request.page_size, &request.page_token);
        id.zip(page).map(|(id, page)| EventList::Item(id, page))
    } else {
        let id = correlation_id(&mut violations, correlation);
        let page = convert::item_page(&mut violations, request.page_size, &request.page_token);
        id.zip(page).map(|(id, page)| EventList::Correlation(id, page))
    };
    validated(violations, list)
}

/// `WatchItemEvents`: the filter (owner, template, types) and where the stream starts.
pub fn watch(request: &pb::WatchItemEventsRequest) -> Result<(WatchFilter, Start), Status> {
    use pb::watch_item_events_request::Start as Oneof;
    let mut violations = Violations::default();
    let owner = match request.owner_user_id {
        0 => Some(None),
        id => user(&mut violations, "owner_user_id", id).map(Some),
    };
    let template = match request.template_code.as_str() {
        "" => Some(None),
        value => code(&mut violations, "template_code", value).map(Some),
    };
    let types = convert::event_type_filter(&mut violations, &request.types);
    let start = match &request.start {
        None => Start::from_request(&mut violations, None, None),
        Some(Oneof::AfterCursor(text)) => Start::from_request(&mut violations, Some(text), None),
        Some(Oneof::FromBeginning(flag)) => Start::from_request(&mut violations, None, Some(*flag)),
    };
    let filter =
        owner.zip(template).zip(types).map(|((owner, template), types)| WatchFilter { owner, template, types });
    validated(violations, filter.zip(start))
}
