//! proto <-> domain conversion. Inbound helpers record a field violation and return
//! `None` on bad input, so one response lists every bad field.

use std::collections::HashMap;

use economy_kit::error::Violations;
use economy_kit::time::{from_timestamp, to_timestamp};
use economy_proto::items::v1 as pb;

use crate::domain::event::{Event, EventType};
use crate::domain::group::{Group, GroupKey, is_metadata_hash};
use crate::domain::ids::{
    CorrelationId, Holder, IdempotencyKey, ItemId, TemplateCode, UserId, parse_business_type, parse_metadata,
};
use crate::domain::item::{Item, ItemStatus, StatusBucket};
use crate::domain::template::{ItemKind, Template};
use crate::store::Page;

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest accepted `page_size`.
pub const MAX_PAGE_SIZE: i32 = 500;

/// Records `result`'s error as a violation of `name`.
pub fn field<T>(violations: &mut Violations, name: &str, result: Result<T, &'static str>) -> Option<T> {
    result.map_err(|description| violations.add(name, description)).ok()
}

/// A positive user id.
pub fn user(violations: &mut Violations, name: &str, id: i64) -> Option<UserId> {
    field(violations, name, UserId::parse(id))
}

/// A template code.
pub fn code(violations: &mut Violations, name: &str, value: &str) -> Option<TemplateCode> {
    field(violations, name, TemplateCode::parse(value))
}

/// An instance id (any UUID spelling).
pub fn item_id(violations: &mut Violations, name: &str, value: &str) -> Option<ItemId> {
    field(violations, name, ItemId::parse(value))
}

/// An idempotency key.
pub fn key(violations: &mut Violations, name: &str, value: &str) -> Option<IdempotencyKey> {
    field(violations, name, IdempotencyKey::parse(value))
}

/// A lock holder.
pub fn holder(violations: &mut Violations, name: &str, value: &str) -> Option<Holder> {
    field(violations, name, Holder::parse(value))
}

/// A correlation id (empty for none).
pub fn correlation_id(violations: &mut Violations, value: &str) -> Option<CorrelationId> {
    field(violations, "correlation_id", CorrelationId::parse(value))
}

/// A business type; empty means `default`.
pub fn business_type(violations: &mut Violations, value: &str, default: &str) -> Option<String> {
    field(violations, "business_type", parse_business_type(if value.is_empty() { default } else { value }))
}

/// Metadata (at most 32 entries; keys 1-64 bytes, values at most 1024).
pub fn metadata(
    violations: &mut Violations,
    name: &str,
    value: &HashMap<String, String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    field(violations, name, parse_metadata(value.iter()))
}

/// Free text of at most `max` characters (`required`: not empty nor only white space; the
/// text is kept as given).
pub fn text(violations: &mut Violations, name: &str, value: &str, max: usize, required: bool) -> Option<String> {
    let length = value.chars().count();
    let ok = length <= max && (!value.trim().is_empty() || !required);
    violations.check(ok, name, if required { "is required (at most the allowed length)" } else { "is too long" });
    ok.then(|| value.to_owned())
}

/// An optional instant: unset -> `None`; an invalid timestamp is a violation. Whether it
/// lies in the future is checked at write time, after a replay lookup.
pub fn instant(violations: &mut Violations, name: &str, value: Option<&prost_types::Timestamp>) -> Option<Option<i64>> {
    match value.map(from_timestamp) {
        None => Some(None),
        Some(Some(millis)) => Some(Some(millis)),
        Some(None) => field(violations, name, Err("must be a valid timestamp")),
    }
}

/// A page size: 0 -> default, 1..=500.
pub fn page_size(violations: &mut Violations, size: i32) -> Option<i64> {
    let size = if size == 0 { DEFAULT_PAGE_SIZE } else { size };
    violations.check((1..=MAX_PAGE_SIZE).contains(&size), "page_size", "must be between 0 and 500");
    (1..=MAX_PAGE_SIZE).contains(&size).then_some(i64::from(size))
}

/// A page of instances; the token is the last id of the previous page.
pub fn item_page(violations: &mut Violations, size: i32, token: &str) -> Option<Page<String>> {
    let after = if token.is_empty() {
        Some(None)
    } else {
        item_id(violations, "page_token", token).map(|id| Some(id.to_string()))
    };
    Some(Page { limit: page_size(violations, size)?, after: after? })
}

/// A page of events; the token is the last version of the previous page.
pub fn event_page(violations: &mut Violations, size: i32, token: &str) -> Option<Page<i64>> {
    let after = match token {
        "" => Some(None),
        token => field(violations, "page_token", token.parse::<i64>().map(Some).map_err(|_| "is not a page token")),
    };
    Some(Page { limit: page_size(violations, size)?, after: after? })
}

/// A page of groups; the token is `group_token` of the last group of the previous page.
pub fn group_page(violations: &mut Violations, size: i32, token: &str) -> Option<Page<GroupKey>> {
    let after =
        if token.is_empty() { Some(None) } else { field(violations, "page_token", parse_group_token(token).map(Some)) };
    Some(Page { limit: page_size(violations, size)?, after: after? })
}

/// Opaque cursor of a group: hex of the JSON `[template, bucket rank, day or -1, hash]`.
pub fn group_token(key: &GroupKey) -> String {
    let parts = (key.template.as_str(), key.bucket.rank(), key.expiry_day.unwrap_or(-1), &key.metadata_hash);
    hex::encode(serde_json::to_vec(&parts).unwrap_or_default())
}

fn parse_group_token(token: &str) -> Result<GroupKey, &'static str> {
    const BAD: &str = "is not a page token";
    let bytes = hex::decode(token).map_err(|_| BAD)?;
    let (template, rank, day, hash): (String, i64, i64, String) = serde_json::from_slice(&bytes).map_err(|_| BAD)?;
    if !is_metadata_hash(&hash) || day < -1 {
        return Err(BAD);
    }
    Ok(GroupKey {
        template: TemplateCode::parse(&template).map_err(|_| BAD)?,
        bucket: StatusBucket::from_rank(rank).ok_or(BAD)?,
        expiry_day: (day >= 0).then_some(day),
        metadata_hash: hash,
    })
}

/// Token of the page after `count` rows when the page was full.
pub fn next_token(count: usize, limit: i64, last: Option<String>) -> String {
    let full = i64::try_from(count).is_ok_and(|count| count == limit);
    if full { last.unwrap_or_default() } else { String::new() }
}

/// Proto kind -> domain.
pub fn item_kind(kind: i32) -> Result<ItemKind, &'static str> {
    match pb::ItemKind::try_from(kind) {
        Ok(pb::ItemKind::Voucher) => Ok(ItemKind::Voucher),
        Ok(pb::ItemKind::Product) => Ok(ItemKind::Product),
        Ok(pb::ItemKind::Service) => Ok(ItemKind::Service),
        Ok(pb::ItemKind::Equipment) => Ok(ItemKind::Equipment),
        Ok(pb::ItemKind::Card) => Ok(ItemKind::Card),
        Ok(pb::ItemKind::Other) => Ok(ItemKind::Other),
        _ => Err("must be VOUCHER, PRODUCT, SERVICE, EQUIPMENT, CARD or OTHER"),
    }
}

fn kind_to_proto(kind: ItemKind) -> pb::ItemKind {
    match kind {
        ItemKind::Voucher => pb::ItemKind::Voucher,
        ItemKind::Product => pb::ItemKind::Product,
        ItemKind::Service => pb::ItemKind::Service,
        ItemKind::Equipment => pb::ItemKind::Equipment,
        ItemKind::Card => pb::ItemKind::Card,
        ItemKind::Other => pb::ItemKind::Other,
    }
}

/// Proto status filter -> domain; UNSPECIFIED or unknown values are violations.
pub fn status_filter(violations: &mut Violations, statuses: &[i32]) -> Option<Vec<ItemStatus>> {
    let parsed: Option<Vec<ItemStatus>> = statuses
        .iter()
        .map(|status| match pb::ItemStatus::try_from(*status) {
            Ok(pb::ItemStatus::Available) => Some(ItemStatus::Available),
            Ok(pb::ItemStatus::Locked) => Some(ItemStatus::Locked),
            Ok(pb::ItemStatus::Used) => Some(ItemStatus::Used),
            Ok(pb::ItemStatus::Expired) => Some(ItemStatus::Expired),
            Ok(pb::ItemStatus::Revoked) => Some(ItemStatus::Revoked),
            _ => None,
        })
        .collect();
    field(violations, "statuses", parsed.ok_or("must be AVAILABLE, LOCKED, USED, EXPIRED or REVOKED"))
}

/// Proto event-type filter -> domain; UNSPECIFIED or unknown values are violations.
pub fn event_type_filter(violations: &mut Violations, types: &[i32]) -> Option<Vec<EventType>> {
    let parsed: Option<Vec<EventType>> = types
        .iter()
        .map(|kind| {
            let kind = pb::ItemEventType::try_from(*kind).ok()?;
            EventType::ALL.into_iter().find(|candidate| event_type(*candidate) == kind)
        })
        .collect();
    field(
        violations,
        "types",
        parsed.ok_or("must be GRANTED, LOCKED, UNLOCKED, TRANSFERRED, USED, EXPIRED, REVOKED or IMPORTED"),
    )
}

/// Domain status -> proto.
pub fn status(status: ItemStatus) -> pb::ItemStatus {
    match status {
        ItemStatus::Available => pb::ItemStatus::Available,
        ItemStatus::Locked => pb::ItemStatus::Locked,
        ItemStatus::Used => pb::ItemStatus::Used,
        ItemStatus::Expired => pb::ItemStatus::Expired,
        ItemStatus::Revoked => pb::ItemStatus::Revoked,
    }
}

/// A template.
pub fn template(template: &Template) -> pb::ItemTemplate {
    pb::ItemTemplate {
        code: template.code.to_string(),
        display_name: template.display_name.clone(),
        kind: kind_to_proto(template.kind).into(),
        default_validity_seconds: template.default_validity_secs,
        redeemable: template.redeemable,
        consumable: template.consumable,
        metadata: template.metadata.clone().into_iter().collect(),
        created_at: Some(to_timestamp(template.created_at)),
        updated_at: Some(to_timestamp(template.updated_at)),
    }
}

/// An instance.
pub fn item(item: &Item) -> pb::ItemInstance {
    let lock = item.state.lock();
    pb::ItemInstance {
        id: item.id.to_string(),
        template_code: item.template.to_string(),
        owner_user_id: item.owner.get(),
        status: status(item.state.status()).into(),
        lock_holder: lock.map(|lock| lock.holder.to_string()).unwrap_or_default(),
        locked_at: lock.map(|lock| to_timestamp(lock.locked_at)),
        lock_expires_at: lock.and_then(|lock| lock.expires_at).map(to_timestamp),
        expires_at: item.expires_at.map(to_timestamp),
        metadata: item.metadata.clone().into_iter().collect(),
        metadata_hash: item.metadata_hash.clone(),
        version: item.version,
        created_at: Some(to_timestamp(item.created_at)),
        updated_at: Some(to_timestamp(item.updated_at)),
    }
}

fn event_type(kind: EventType) -> pb::ItemEventType {
    match kind {
        EventType::Granted => pb::ItemEventType::Granted,
        EventType::Locked => pb::ItemEventType::Locked,
        EventType::Unlocked => pb::ItemEventType::Unlocked,
        EventType::Transferred => pb::ItemEventType::Transferred,
        EventType::Used => pb::ItemEventType::Used,
        EventType::Expired => pb::ItemEventType::Expired,
        EventType::Revoked => pb::ItemEventType::Revoked,
        EventType::Imported => pb::ItemEventType::Imported,
    }
}

/// An event.
pub fn event(event: &Event) -> pb::ItemEvent {
    pb::ItemEvent {
        id: event.id.clone(),
        item_instance_id: event.item_id.clone(),
        r#type: event_type(event.kind).into(),
        version: event.version,
        actor: event.actor.clone(),
        from_owner_user_id: event.from_owner.map_or(0, UserId::get),
        to_owner_user_id: event.to_owner.get(),
        holder: event.holder.clone().unwrap_or_default(),
        business_type: event.business_type.clone(),
        idempotency_key: event.idempotency_key.clone(),
        reason: event.reason.clone(),
        status: status(event.status).into(),
        created_at: Some(to_timestamp(event.created_at)),
        correlation_id: event.correlation_id.clone(),
    }
}

/// A group.
pub fn group(group: &Group) -> pb::ItemGroup {
    let bucket = match group.key.bucket {
        StatusBucket::Available => pb::StatusBucket::Available,
        StatusBucket::Locked => pb::StatusBucket::Locked,
        StatusBucket::Finished => pb::StatusBucket::Finished,
    };
    pb::ItemGroup {
        template_code: group.key.template.to_string(),
        bucket: bucket.into(),
        expiry_day: group.key.expiry_day_start().map(to_timestamp),
        metadata_hash: group.key.metadata_hash.clone(),
        count: group.count,
        item_instance_ids: group.ids.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_tokens_round_trip() {
        let key = GroupKey {
            template: TemplateCode::parse("coffee").expect("code"),
            bucket: StatusBucket::Locked,
            expiry_day: Some(20_000),
            metadata_hash: "a".repeat(64),
        };
        assert_eq!(parse_group_token(&group_token(&key)), Ok(key.clone()));
        let never = GroupKey { expiry_day: None, ..key };
        assert_eq!(parse_group_token(&group_token(&never)), Ok(never));
        for bad in ["zz", "00", &hex::encode(r#"["coffee",9,1,"x"]"#)] {
            assert!(parse_group_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_validate_size_and_token() {
        let mut violations = Violations::default();
        assert_eq!(event_page(&mut violations, 0, "7"), Some(Page { after: Some(7), limit: 50 }));
        assert!(violations.is_empty());
        assert_eq!(event_page(&mut violations, 501, "x"), None);
        assert!(!violations.is_empty());
        assert_eq!(next_token(2, 2, Some("b".into())), "b");
        assert_eq!(next_token(1, 2, Some("a".into())), "");
    }
}
