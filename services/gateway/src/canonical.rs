//! Request fingerprints and response redaction, both driven by the field policies of
//! `economy.options.v1.field` (DESIGN.md §3 Gateway).
//!
//! Fingerprint = lowercase hex SHA-256 of the canonical JSON of
//! `{user_id, canonical_operation, request}`: proto3 JSON of the request with every
//! `fingerprint_exclude` field removed (at any depth) and every object key sorted, so field
//! order, map order and excluded fields never change it.

use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::registry::Registry;

/// What replaces a `sensitive` string in a stored response.
pub const REDACTED: &str = "[REDACTED]";

/// The request fingerprint.
pub fn fingerprint(registry: &Registry, user_id: i64, canonical_operation: &str, request: &DynamicMessage) -> String {
    let mut request = request.clone();
    strip(registry, &mut request, &|(exclude, _)| exclude);
    let body = serde_json::to_value(&request).unwrap_or(Json::Null);
    let envelope = serde_json::json!({
        "user_id": user_id.to_string(),
        "canonical_operation": canonical_operation,
        "request": body,
    });
    let mut canonical = String::new();
    write_sorted(&mut canonical, &envelope);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// A copy of `response` whose `sensitive` fields are replaced: strings by `REDACTED`,
/// other values cleared.
pub fn redact(registry: &Registry, response: &DynamicMessage) -> DynamicMessage {
    let mut response = response.clone();
    strip(registry, &mut response, &|(_, sensitive)| sensitive);
    response
}

/// True when any field of `message` type (at any depth) is `sensitive`.
pub fn has_sensitive_fields(registry: &Registry, descriptor: &prost_reflect::MessageDescriptor) -> bool {
    fn visit(registry: &Registry, descriptor: &prost_reflect::MessageDescriptor, seen: &mut Vec<String>) -> bool {
        if seen.iter().any(|name| name == descriptor.full_name()) {
            return false;
        }
        seen.push(descriptor.full_name().to_owned());
        descriptor.fields().any(|field| {
            registry.field_policy(&field).1
                || matches!(field.kind(), prost_reflect::Kind::Message(inner) if visit(registry, &inner, seen))
        })
    }
    visit(registry, descriptor, &mut Vec::new())
}

/// Removes (or, for `sensitive` strings, masks) every field `selected` by its
/// `(fingerprint_exclude, sensitive)` policy, recursing into messages, lists and maps.
fn strip(registry: &Registry, message: &mut DynamicMessage, selected: &dyn Fn((bool, bool)) -> bool) {
    for field in message.descriptor().fields() {
        if !message.has_field(&field) {
            continue;
        }
        if selected(registry.field_policy(&field)) {
            match message.get_field(&field).as_ref() {
                Value::String(_) => message.set_field(&field, Value::String(REDACTED.into())),
                _ => message.clear_field(&field),
            }
            continue;
        }
        strip_value(registry, message.get_field_mut(&field), selected);
    }
}

fn strip_value(registry: &Registry, value: &mut Value, selected: &dyn Fn((bool, bool)) -> bool) {
    match value {
        Value::Message(inner) => strip(registry, inner, selected),
        Value::List(items) => items.iter_mut().for_each(|item| strip_value(registry, item, selected)),
        Value::Map(entries) => entries.values_mut().for_each(|item| strip_value(registry, item, selected)),
        _ => {}
    }
}

/// JSON with object keys in sorted order at every depth.
fn write_sorted(out: &mut String, value: &Json) {
    match value {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(key.clone()).to_string());
                out.push(':');
                write_sorted(out, &map[key]);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_sorted(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::test_support::compile;

    const PROTO: &str = r#"syntax = "proto3";
        package economy.shop.v1;
        import "economy/options/v1/options.proto";
        message Line { string sku = 1; string nonce = 2 [(economy.options.v1.field) = {fingerprint_exclude: true}]; }
        message BuyRequest {
          int64 amount = 1;
          map<string, string> tags = 2;
          repeated Line lines = 3;
          int64 client_time = 4 [(economy.options.v1.field) = {fingerprint_exclude: true}];
        }
        message BuyResponse { string code = 1 [(economy.options.v1.field) = {sensitive: true}]; string order_id = 2; }
        service ShopService {
          rpc Buy(BuyRequest) returns (BuyResponse) { option (economy.options.v1.method) = {canonical_operation: "SHOP_BUY_ITEM"}; }
        }"#;

    fn setup() -> (Registry, DescriptorPool) {
        let bytes = compile(PROTO);
        (Registry::load(&bytes).expect("registry"), DescriptorPool::decode(bytes.as_slice()).expect("pool"))
    }

    fn request(pool: &DescriptorPool, json: &str) -> DynamicMessage {
        let descriptor = pool.get_message_by_name("economy.shop.v1.BuyRequest").expect("message");
        let mut deserializer = serde_json::Deserializer::from_str(json);
        DynamicMessage::deserialize(descriptor, &mut deserializer).expect("json")
    }

    #[test]
    fn order_maps_and_excluded_fields_do_not_change_the_fingerprint() {
        let (registry, pool) = setup();
        let base = fingerprint(
            &registry,
            7,
            "SHOP_BUY_ITEM",
            &request(
                &pool,
                r#"{"amount":"5","tags":{"a":"1","b":"2"},"lines":[{"sku":"x","nonce":"n1"}],"clientTime":"1"}"#,
            ),
        );
        let same = fingerprint(
            &registry,
            7,
            "SHOP_BUY_ITEM",
            &request(
                &pool,
                r#"{"clientTime":"99","lines":[{"nonce":"n2","sku":"x"}],"tags":{"b":"2","a":"1"},"amount":"5"}"#,
            ),
        );
        assert_eq!(base, same);
        let other_body = fingerprint(
            &registry,
            7,
            "SHOP_BUY_ITEM",
            &request(&pool, r#"{"amount":"6","tags":{"a":"1","b":"2"},"lines":[{"sku":"x"}]}"#),
        );
        let other_user = fingerprint(
            &registry,
            8,
            "SHOP_BUY_ITEM",
            &request(&pool, r#"{"amount":"5","tags":{"a":"1","b":"2"},"lines":[{"sku":"x"}]}"#),
        );
        let other_operation = fingerprint(
            &registry,
            7,
            "SHOP_SELL_ITEM",
            &request(&pool, r#"{"amount":"5","tags":{"a":"1","b":"2"},"lines":[{"sku":"x"}]}"#),
        );
        assert_ne!(base, other_body);
        assert_ne!(base, other_user);
        assert_ne!(base, other_operation);
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn sensitive_fields_are_redacted() {
        let (registry, pool) = setup();
        let descriptor = pool.get_message_by_name("economy.shop.v1.BuyResponse").expect("message");
        assert!(has_sensitive_fields(&registry, &descriptor));
        assert!(!has_sensitive_fields(&registry, &pool.get_message_by_name("economy.shop.v1.Line").expect("message")));
        let mut response = DynamicMessage::new(descriptor);
        response.set_field_by_name("code", Value::String("ABCD-EFGH-JKMN".into()));
        response.set_field_by_name("order_id", Value::String("o-1".into()));
        let redacted = redact(&registry, &response);
        assert_eq!(redacted.get_field_by_name("code").as_deref(), Some(&Value::String(REDACTED.into())));
        assert_eq!(redacted.get_field_by_name("order_id").as_deref(), Some(&Value::String("o-1".into())));
    }

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let mut out = String::new();
        write_sorted(&mut out, &serde_json::json!({"b": {"d": 1, "c": [ {"z": 1, "y": 2} ]}, "a": "x"}));
        assert_eq!(out, r#"{"a":"x","b":{"c":[{"y":2,"z":1}],"d":1}}"#);
    }
}
