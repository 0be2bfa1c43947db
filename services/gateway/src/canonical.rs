//! Request fingerprints and response redaction, both driven by the field policies of
//! `economy.options.v1.field` (docs/idempotency.md), as `policy` read them at start-up.
//!
//! Fingerprint = lowercase hex SHA-256 of the canonical JSON of
//! `{user_id, canonical_operation, request}`: proto3 JSON of the request with every
//! `fingerprint_exclude` field removed (at any depth) and every object key sorted, so field
//! order, map order and excluded fields never change it.

use std::borrow::Cow;

use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::policy::{FieldPolicies, Selection};

/// The request fingerprint: 64 lowercase hex digits.
pub fn fingerprint(
    policies: &FieldPolicies,
    user_id: i64,
    canonical_operation: &str,
    request: &DynamicMessage,
) -> String {
    hex::encode(Sha256::digest(canonical_form(policies, user_id, canonical_operation, request)))
}

/// The bytes the fingerprint hashes: the envelope `{user_id, canonical_operation,
/// request}` as JSON, its keys in sorted order.
fn canonical_form(
    policies: &FieldPolicies,
    user_id: i64,
    canonical_operation: &str,
    request: &DynamicMessage,
) -> Vec<u8> {
    let request = stripped(policies, Selection::FingerprintExclude, request);
    let body = serde_json::to_value(request.as_ref()).unwrap_or(Json::Null);
    let mut canonical = Vec::with_capacity(256);
    canonical.extend_from_slice(br#"{"canonical_operation":"#);
    write_json(&mut canonical, canonical_operation);
    canonical.extend_from_slice(br#","request":"#);
    write_sorted(&mut canonical, &body);
    canonical.extend_from_slice(br#","user_id":"#);
    write_json(&mut canonical, &user_id.to_string());
    canonical.push(b'}');
    canonical
}

/// `response` with its `sensitive` fields cleared (a replay returns them empty, or at
/// their type's default); borrowed unchanged when its type holds none.
pub fn redact<'a>(policies: &FieldPolicies, response: &'a DynamicMessage) -> Cow<'a, DynamicMessage> {
    stripped(policies, Selection::Sensitive, response)
}

/// Longest string a reduced snapshot keeps, bytes: ids and codes fit, blobs do not.
const MAX_REDUCED_STRING: usize = 256;

/// What a response too large to keep is reduced to: its scalar fields (ids, statuses,
/// amounts) at every depth, and lists of up to 100 short strings or numbers (ids);
/// other lists, maps, bytes and strings over 256 bytes are cleared.
pub fn reduced(response: &DynamicMessage) -> DynamicMessage {
    let mut copy = response.clone();
    reduce(&mut copy);
    copy
}

fn reduce(message: &mut DynamicMessage) {
    for field in message.descriptor().fields() {
        if !message.has_field(&field) {
            continue;
        }
        let keep = match &mut *message.get_field_mut(&field) {
            Value::List(items) => items.len() <= MAX_REDUCED_LIST && items.iter().all(is_short_scalar),
            Value::Map(_) | Value::Bytes(_) => false,
            Value::String(text) => text.len() <= MAX_REDUCED_STRING,
            Value::Message(inner) => {
                reduce(inner);
                true
            }
            _ => true,
        };
        if !keep {
            message.clear_field(&field);
        }
    }
}

/// Longest list a reduced snapshot keeps.
const MAX_REDUCED_LIST: usize = 100;

fn is_short_scalar(value: &Value) -> bool {
    match value {
        Value::String(text) => text.len() <= MAX_REDUCED_STRING,
        Value::List(_) | Value::Map(_) | Value::Bytes(_) | Value::Message(_) => false,
        _ => true,
    }
}

/// `message` without the fields `selection` flags, copied only when its type may hold one.
fn stripped<'a>(
    policies: &FieldPolicies,
    selection: Selection,
    message: &'a DynamicMessage,
) -> Cow<'a, DynamicMessage> {
    if !policies.reaches(selection, &message.descriptor()) {
        return Cow::Borrowed(message);
    }
    let mut copy = message.clone();
    strip(policies, selection, &mut copy);
    Cow::Owned(copy)
}

/// Removes every field `selection` flags, descending only into fields whose message type
/// may hold one. The caller checks that `message`'s own type may.
fn strip(policies: &FieldPolicies, selection: Selection, message: &mut DynamicMessage) {
    for field in message.descriptor().fields() {
        if !message.has_field(&field) {
            continue;
        }
        if policies.selects(selection, &field) {
            message.clear_field(&field);
            continue;
        }
        if matches!(field.kind(), Kind::Message(inner) if policies.reaches(selection, &inner)) {
            strip_value(policies, selection, message.get_field_mut(&field));
        }
    }
}

fn strip_value(policies: &FieldPolicies, selection: Selection, value: &mut Value) {
    match value {
        Value::Message(inner) => strip(policies, selection, inner),
        Value::List(items) => items.iter_mut().for_each(|item| strip_value(policies, selection, item)),
        Value::Map(entries) => entries.values_mut().for_each(|item| strip_value(policies, selection, item)),
        _ => {}
    }
}

/// Writes `value` as JSON with object keys in sorted order at every depth.
fn write_sorted(out: &mut Vec<u8>, value: &Json) {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(&String, &Json)> = map.iter().collect();
            entries.sort_by_key(|(key, _)| *key);
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_json(out, key);
                out.push(b':');
                write_sorted(out, item);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_sorted(out, item);
            }
            out.push(b']');
        }
        scalar => write_json(out, scalar),
    }
}

/// Appends `value` as compact JSON (strings escaped as `serde_json` escapes them).
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // Writing a string or a JSON scalar into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, value);
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

    fn setup() -> (FieldPolicies, DescriptorPool) {
        let pool = DescriptorPool::decode(compile(PROTO).as_slice()).expect("pool");
        (FieldPolicies::load(&pool), pool)
    }

    fn request(pool: &DescriptorPool, json: &str) -> DynamicMessage {
        let descriptor = pool.get_message_by_name("economy.shop.v1.BuyRequest").expect("message");
        let mut deserializer = serde_json::Deserializer::from_str(json);
        DynamicMessage::deserialize(descriptor, &mut deserializer).expect("json")
    }

    #[test]
    fn order_maps_and_excluded_fields_do_not_change_the_fingerprint() {
        let (policies, pool) = setup();
        let base = fingerprint(
            &policies,
            7,
            "SHOP_BUY_ITEM",
            &request(
                &pool,
                r#"{"amount":"5","tags":{"a":"1","b":"2"},"lines":[{"sku":"x","nonce":"n1"}],"clientTime":"1"}"#,
            ),
        );
        let same = fingerprint(
            &policies,
            7,
            "SHOP_BUY_ITEM",
            &request(
                &pool,
                r#"{"clientTime":"99","lines":[{"nonce":"n2","sku":"x"}],"tags":{"b":"2","a":"1"},"amount":"5"}"#,
            ),
        );
        assert_eq!(base, same);
        let without_excluded = fingerprint(
            &policies,
            7,
            "SHOP_BUY_ITEM",
            &request(&pool, r#"{"amount":"5","tags":{"a":"1","b":"2"},"lines":[{"sku":"x"}]}"#),
        );
        assert_eq!(base, without_excluded, "an excluded field counts as absent");
        let other_body = fingerprint(
            &policies,
            7,
            "SHOP_BUY_ITEM",
            &request(&pool, r#"{"amount":"6","tags":{"a":"1","b":"2"},"lines":[{"sku":"x"}]}"#),
        );
        let other_user = fingerprint(
            &policies,
            8,
            "SHOP_BUY_ITEM",
            &request(&pool, r#"{"amount":"5","tags":{"a":"1","b":"2"},"lines":[{"sku":"x"}]}"#),
        );
        let other_operation = fingerprint(
            &policies,
            7,
            "SHOP_SELL_ITEM",
            &request(&pool, r#"{"amount":"5","tags":{"a":"1","b":"2"},"lines":[{"sku":"x"}]}"#),
        );
        assert_ne!(base, other_body);
        assert_ne!(base, other_user);
        assert_ne!(base, other_operation);
        assert_eq!(base.len(), 64);
    }

    /// Stored records keep their fingerprints for 7 days: a change of the canonical form
    /// turns retries across an upgrade into conflicts, so it is pinned here.
    #[test]
    fn the_canonical_form_is_pinned() {
        let (policies, pool) = setup();
        let message = request(
            &pool,
            r#"{"amount":"5","tags":{"b":"2","a":"\u00e9\"q"},"lines":[{"sku":"x","nonce":"n1"},{"sku":"y"}],"clientTime":"1"}"#,
        );
        let form = canonical_form(&policies, -7, "SHOP_BUY_ITEM", &message);
        assert_eq!(
            String::from_utf8(form).expect("utf-8"),
            r#"{"canonical_operation":"SHOP_BUY_ITEM","request":{"amount":"5","lines":[{"sku":"x"},{"sku":"y"}],"tags":{"a":"é\"q","b":"2"}},"user_id":"-7"}"#
        );
        assert_eq!(
            fingerprint(&policies, -7, "SHOP_BUY_ITEM", &message),
            "0e5e06f2d5de660a17a548a131ebd7402f0c5798d11fecb99148ba8887a9ff7c"
        );
        assert_eq!(
            fingerprint(&policies, 0, "SHOP_BUY_ITEM", &request(&pool, "{}")),
            "2f8a43af404be693301bef687e3620ec5910af8dca6a5a1f075c426c8022e9f3"
        );
    }

    #[test]
    fn sensitive_fields_are_redacted() {
        let (policies, pool) = setup();
        let descriptor = pool.get_message_by_name("economy.shop.v1.BuyResponse").expect("message");
        assert!(policies.reaches(Selection::Sensitive, &descriptor));
        let line = pool.get_message_by_name("economy.shop.v1.Line").expect("message");
        assert!(!policies.reaches(Selection::Sensitive, &line));
        let mut response = DynamicMessage::new(descriptor);
        response.set_field_by_name("code", Value::String("ABCD-EFGH-JKMN".into()));
        response.set_field_by_name("order_id", Value::String("o-1".into()));
        let redacted = redact(&policies, &response);
        assert!(!redacted.has_field_by_name("code"));
        assert_eq!(redacted.get_field_by_name("order_id").as_deref(), Some(&Value::String("o-1".into())));
    }

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let mut out = Vec::new();
        write_sorted(&mut out, &serde_json::json!({"b": {"d": 1, "c": [ {"z": 1, "y": "\u{e9}\"q"} ]}, "a": "x"}));
        assert_eq!(String::from_utf8(out).expect("utf-8"), r#"{"a":"x","b":{"c":[{"y":"é\"q","z":1}],"d":1}}"#);
    }
}
