//! proto <-> domain conversion of offers and exchanges, and validation of their requests
//! (docs/market.md, "Offers" and "Exchanges"): every bad field is listed at once.

use std::collections::{BTreeMap, HashMap};

use economy_kit::error::Violations;
use economy_kit::time::{from_timestamp, to_timestamp};
use economy_proto::market::v1 as pb;

use super::convert::is_code;
use crate::domain::offer::MAX_ITEMS_PER_EXCHANGE;
use crate::domain::{
    AssetAmount, Exchange, ExchangeKind, ExchangeStatus, ItemReward, Offer, OfferDefinition, PurchaseLimit, Reward,
};
use crate::service::NewBundle;

/// Most price assets of an offer.
const MAX_PRICE_ASSETS: usize = 8;
/// Most reward assets, and most item rewards, of an offer or bundle.
const MAX_REWARD_ENTRIES: usize = 16;
/// Most units one purchase buys.
pub const MAX_QUANTITY: i64 = 100;
/// Longest rolling window, seconds (a year).
const MAX_WINDOW_SECS: i64 = 31_536_000;
/// Longest validity of a granted item, seconds (ten years).
const MAX_VALIDITY_SECS: i64 = 315_360_000;

/// Whether `value` is an offer id: 1-64 characters of A-Z a-z 0-9 `_` `-` `.`.
pub fn is_offer_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
}

/// Whether `value` is an UPPER_SNAKE business type of 1-64 characters.
fn is_business_type(value: &str) -> bool {
    value.bytes().next().is_some_and(|byte| byte.is_ascii_uppercase())
        && value.len() <= 64
        && value.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_')
}

/// At most 32 entries; keys 1-64 bytes, values at most 1024.
fn check_metadata(metadata: &HashMap<String, String>, field: &str, violations: &mut Violations) {
    let fits = metadata.len() <= 32
        && metadata.iter().all(|(key, value)| (1..=64).contains(&key.len()) && value.len() <= 1024);
    violations.check(fits, field, "at most 32 entries; keys 1-64 bytes, values at most 1024");
}

fn sorted(metadata: &HashMap<String, String>) -> BTreeMap<String, String> {
    metadata.iter().map(|(key, value)| (key.clone(), value.clone())).collect()
}

/// Asset amounts: codes, positive amounts, each asset once, `1..=max` of them
/// (`0..=max` when `may_be_empty`).
fn amounts(amounts: &[pb::AssetAmount], field: &str, max: usize, violations: &mut Violations) -> Vec<AssetAmount> {
    violations.check(amounts.len() <= max, field, &format!("at most {max} assets"));
    for (index, amount) in amounts.iter().enumerate() {
        violations.check(is_code(&amount.asset_code), &format!("{field}[{index}].asset_code"), "an asset code");
        violations.check(amount.amount > 0, &format!("{field}[{index}].amount"), "a positive amount");
        let repeated = amounts[..index].iter().any(|earlier| earlier.asset_code == amount.asset_code);
        violations.check(!repeated, &format!("{field}[{index}].asset_code"), "each asset once");
    }
    amounts.iter().map(|amount| AssetAmount { asset_code: amount.asset_code.clone(), amount: amount.amount }).collect()
}

/// A reward: at least one entry, at most 16 assets and 16 item rewards, at most 100 items.
fn reward(reward: Option<&pb::Reward>, field: &str, violations: &mut Violations) -> Reward {
    let default = pb::Reward::default();
    let reward = reward.unwrap_or(&default);
    let assets = amounts(&reward.assets, &format!("{field}.assets"), MAX_REWARD_ENTRIES, violations);
    let items_field = format!("{field}.items");
    violations.check(reward.items.len() <= MAX_REWARD_ENTRIES, &items_field, "at most 16 item rewards");
    let items: Vec<_> = reward
        .items
        .iter()
        .enumerate()
        .map(|(index, item)| item_reward(item, &items_field, index, violations))
        .collect();
    violations.check(!assets.is_empty() || !items.is_empty(), field, "at least one asset or item");
    let reward = Reward { assets, items };
    violations.check(reward.item_count() <= MAX_ITEMS_PER_EXCHANGE, &items_field, "at most 100 items in all");
    reward
}

fn item_reward(item: &pb::ItemReward, field: &str, index: usize, violations: &mut Violations) -> ItemReward {
    let at = |name: &str| format!("{field}[{index}].{name}");
    violations.check(is_code(&item.template_code), &at("template_code"), "a template code");
    violations.check((0..=MAX_ITEMS_PER_EXCHANGE).contains(&item.quantity), &at("quantity"), "1..=100, or 0 for 1");
    check_metadata(&item.metadata, &at("metadata"), violations);
    let validity = (0..=MAX_VALIDITY_SECS).contains(&item.valid_for_seconds);
    violations.check(validity, &at("valid_for_seconds"), "0 (the template's validity) up to ten years");
    ItemReward {
        template_code: item.template_code.clone(),
        quantity: item.quantity.clamp(1, MAX_ITEMS_PER_EXCHANGE),
        metadata: sorted(&item.metadata),
        valid_for_secs: item.valid_for_seconds,
    }
}

fn limit(limit: Option<&pb::PurchaseLimit>, violations: &mut Violations) -> PurchaseLimit {
    let limit = limit.cloned().unwrap_or_default();
    violations.check(limit.total >= 0, "limit.total", "0 (none) or more");
    violations.check(limit.per_window >= 0, "limit.per_window", "0 (none) or more");
    let window_ok = if limit.per_window > 0 {
        (1..=MAX_WINDOW_SECS).contains(&limit.window_seconds)
    } else {
        limit.window_seconds == 0
    };
    violations.check(window_ok, "limit.window_seconds", "1..=31536000 with per_window, else 0");
    PurchaseLimit { total: limit.total, per_window: limit.per_window, window_secs: limit.window_seconds }
}

/// An optional instant: unset, or a valid one.
fn instant(value: Option<&prost_types::Timestamp>, field: &str, violations: &mut Violations) -> Option<i64> {
    let instant = value.map(from_timestamp);
    violations.check(instant.is_none_or(|at| at.is_some()), field, "a valid instant");
    instant.flatten()
}

/// Validates a DefineOffer into the definition to store.
pub fn offer_definition(request: &pb::DefineOfferRequest, violations: &mut Violations) -> OfferDefinition {
    violations.check(is_offer_id(&request.offer_id), "offer_id", "1-64 characters of A-Z a-z 0-9 _ - .");
    let name_ok = (1..=200).contains(&request.display_name.chars().count());
    violations.check(name_ok, "display_name", "1-200 characters");
    let price = amounts(&request.price, "price", MAX_PRICE_ASSETS, violations);
    violations.check(!price.is_empty(), "price", "at least one asset amount");
    violations.check(request.stock.is_none_or(|stock| stock >= 0), "stock", "0 or more, or unset for unlimited");
    let starts_at = instant(request.starts_at.as_ref(), "starts_at", violations);
    let ends_at = instant(request.ends_at.as_ref(), "ends_at", violations);
    if let (Some(starts_at), Some(ends_at)) = (starts_at, ends_at) {
        violations.check(starts_at < ends_at, "ends_at", "after starts_at");
    }
    check_metadata(&request.metadata, "metadata", violations);
    OfferDefinition {
        id: request.offer_id.clone(),
        display_name: request.display_name.clone(),
        price,
        reward: reward(request.reward.as_ref(), "reward", violations),
        stock: request.stock,
        limit: limit(request.limit.as_ref(), violations),
        starts_at,
        ends_at,
        enabled: request.enabled.unwrap_or(true),
        metadata: sorted(&request.metadata),
    }
}

/// Validates a GrantBundle into the bundle to grant.
pub fn new_bundle(request: &pb::GrantBundleRequest, violations: &mut Violations) -> NewBundle {
    violations.check(request.user_id > 0, "user_id", "a positive user id");
    let business_type = &request.business_type;
    violations.check(business_type.is_empty() || is_business_type(business_type), "business_type", "UPPER_SNAKE, 1-64");
    let correlation = &request.correlation_id;
    let correlation_ok = correlation.len() <= 128 && correlation.bytes().all(|byte| byte.is_ascii_graphic());
    violations.check(correlation_ok, "correlation_id", "at most 128 printable ASCII characters");
    NewBundle {
        user_id: request.user_id,
        reward: reward(request.reward.as_ref(), "reward", violations),
        business_type: business_type.clone(),
        correlation_id: correlation.clone(),
    }
}

/// A PurchaseOffer's quantity: 0 -> 1, else 1..=100.
pub fn quantity(value: i64, violations: &mut Violations) -> i64 {
    violations.check((0..=MAX_QUANTITY).contains(&value), "quantity", "1..=100, or 0 for 1");
    value.clamp(1, MAX_QUANTITY)
}

fn amounts_to_proto(amounts: &[AssetAmount]) -> Vec<pb::AssetAmount> {
    amounts.iter().map(|each| pb::AssetAmount { asset_code: each.asset_code.clone(), amount: each.amount }).collect()
}

fn reward_to_proto(reward: &Reward) -> pb::Reward {
    let items = reward.items.iter().map(|item| pb::ItemReward {
        template_code: item.template_code.clone(),
        quantity: item.quantity,
        metadata: item.metadata.clone().into_iter().collect(),
        valid_for_seconds: item.valid_for_secs,
    });
    pb::Reward { assets: amounts_to_proto(&reward.assets), items: items.collect() }
}

/// Domain offer -> proto, `active` as of `now`.
pub fn offer(offer: &Offer, now: i64) -> pb::Offer {
    let definition = &offer.definition;
    pb::Offer {
        id: definition.id.clone(),
        display_name: definition.display_name.clone(),
        price: amounts_to_proto(&definition.price),
        reward: Some(reward_to_proto(&definition.reward)),
        stock: definition.stock,
        sold: offer.sold,
        limit: Some(pb::PurchaseLimit {
            total: definition.limit.total,
            per_window: definition.limit.per_window,
            window_seconds: definition.limit.window_secs,
        }),
        starts_at: definition.starts_at.map(to_timestamp),
        ends_at: definition.ends_at.map(to_timestamp),
        enabled: definition.enabled,
        metadata: definition.metadata.clone().into_iter().collect(),
        version: offer.version,
        created_at: Some(to_timestamp(offer.created_at)),
        updated_at: Some(to_timestamp(offer.updated_at)),
        active: offer.is_active(now),
        remaining: offer.remaining(),
    }
}

fn exchange_status(status: ExchangeStatus) -> pb::ExchangeStatus {
    match status {
        ExchangeStatus::Reserved => pb::ExchangeStatus::Reserved,
        ExchangeStatus::Paid => pb::ExchangeStatus::Paid,
        ExchangeStatus::Granted => pb::ExchangeStatus::Granted,
        ExchangeStatus::Completed => pb::ExchangeStatus::Completed,
        ExchangeStatus::Compensating => pb::ExchangeStatus::Compensating,
        ExchangeStatus::Failed => pb::ExchangeStatus::Failed,
    }
}

/// Domain exchange -> proto (without resulting balances: the write answers add them).
pub fn exchange(exchange: &Exchange) -> pb::Exchange {
    let kind = match exchange.kind {
        ExchangeKind::OfferPurchase => pb::ExchangeKind::OfferPurchase,
        ExchangeKind::Bundle => pb::ExchangeKind::Bundle,
    };
    let granted_items = exchange.granted_items.iter().map(|item| pb::GrantedItem {
        item_instance_id: item.item_instance_id.clone(),
        template_code: item.template_code.clone(),
    });
    pb::Exchange {
        id: exchange.id.clone(),
        business_event_id: exchange.business_event_id.clone(),
        kind: kind.into(),
        user_id: exchange.user_id,
        offer_id: exchange.offer_id.clone(),
        quantity: exchange.quantity,
        paid: amounts_to_proto(&exchange.paid),
        granted_assets: amounts_to_proto(&exchange.reward.assets),
        granted_items: granted_items.collect(),
        status: exchange_status(exchange.status).into(),
        business_type: exchange.business_type.clone(),
        correlation_id: exchange.correlation_id.clone(),
        payment_hold_ids: exchange.payment_hold_ids.clone(),
        ledger_transaction_ids: exchange.ledger_transaction_ids.clone(),
        failure_reason: exchange.failure_reason.clone(),
        failure_asset_code: exchange.failure_asset_code.clone(),
        created_at: Some(to_timestamp(exchange.created_at)),
        finished_at: exchange.finished_at.map(to_timestamp),
        resulting_balances: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn define() -> pb::DefineOfferRequest {
        pb::DefineOfferRequest {
            offer_id: "voucher-10".into(),
            display_name: "10 off".into(),
            price: vec![pb::AssetAmount { asset_code: "POINTS".into(), amount: 500 }],
            reward: Some(pb::Reward {
                assets: vec![],
                items: vec![pb::ItemReward { template_code: "voucher".into(), ..Default::default() }],
            }),
            ..Default::default()
        }
    }

    fn violated(request: &pb::DefineOfferRequest) -> Vec<String> {
        let mut violations = Violations::default();
        offer_definition(request, &mut violations);
        match violations.finish("economy.market") {
            Ok(()) => vec![],
            Err(status) => economy_kit::error::violated_fields(&status),
        }
    }

    #[test]
    fn a_minimal_definition_is_enabled_unlimited_with_one_item_per_reward() {
        let mut violations = Violations::default();
        let definition = offer_definition(&define(), &mut violations);
        assert!(violations.is_empty());
        assert!(definition.enabled && definition.stock.is_none());
        assert_eq!(definition.reward.items[0].quantity, 1);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut request = define();
        request.offer_id = "no spaces".into();
        request.price.push(pb::AssetAmount { asset_code: "POINTS".into(), amount: 0 });
        request.stock = Some(-1);
        request.limit = Some(pb::PurchaseLimit { total: 0, per_window: 1, window_seconds: 0 });
        request.starts_at = Some(to_timestamp(2_000));
        request.ends_at = Some(to_timestamp(1_000));
        request.reward = Some(pb::Reward::default());
        let fields = violated(&request);
        for field in
            ["offer_id", "price[1].asset_code", "price[1].amount", "stock", "limit.window_seconds", "ends_at", "reward"]
        {
            assert!(fields.contains(&field.to_owned()), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn more_than_100_items_in_one_reward_are_refused() {
        let mut request = define();
        let item = pb::ItemReward { template_code: "voucher".into(), quantity: 60, ..Default::default() };
        request.reward = Some(pb::Reward { assets: vec![], items: vec![item.clone(), item] });
        assert_eq!(violated(&request), ["reward.items"]);
    }

    #[test]
    fn bundles_need_a_user_and_take_upper_snake_business_types() {
        let mut violations = Violations::default();
        let request = pb::GrantBundleRequest {
            user_id: 0,
            reward: Some(pb::Reward {
                assets: vec![pb::AssetAmount { asset_code: "POINTS".into(), amount: 5 }],
                items: vec![],
            }),
            business_type: "lottery".into(),
            correlation_id: "draw 1".into(),
            ..Default::default()
        };
        new_bundle(&request, &mut violations);
        let status = violations.finish("economy.market").expect_err("invalid");
        assert_eq!(economy_kit::error::violated_fields(&status), ["user_id", "business_type", "correlation_id"]);
    }
}
