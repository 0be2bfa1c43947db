//! Identifiers, each built only through a validating `parse`, so an invalid one cannot
//! exist.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// A positive user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct UserId(i64);

impl UserId {
    /// Accepts ids > 0.
    pub fn parse(id: i64) -> Result<Self, &'static str> {
        if id > 0 { Ok(Self(id)) } else { Err("must be a positive user id") }
    }

    /// The raw id.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A template code: a letter, then letters, digits or `_`; at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TemplateCode(String);

impl TemplateCode {
    /// Validates the shape.
    pub fn parse(code: &str) -> Result<Self, &'static str> {
        let mut bytes = code.bytes();
        let starts_with_letter = bytes.next().is_some_and(|byte| byte.is_ascii_alphabetic());
        let rest_ok = bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if starts_with_letter && rest_ok && code.len() <= 64 {
            Ok(Self(code.to_owned()))
        } else {
            Err("must be a letter followed by letters, digits or '_' (at most 64)")
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// The UUID of an item instance or event, kept in canonical lowercase hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ItemId(String);

impl ItemId {
    /// A new time-ordered UUIDv7.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts any UUID spelling; stores the canonical form.
    pub fn parse(id: &str) -> Result<Self, &'static str> {
        uuid::Uuid::parse_str(id).map(|uuid| Self(uuid.to_string())).map_err(|_| "must be a UUID")
    }

    /// The canonical string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// An idempotency key: 1-128 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates the shape.
    pub fn parse(key: &str) -> Result<Self, &'static str> {
        if (1..=128).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic()) {
            Ok(Self(key.to_owned()))
        } else {
            Err("must be 1-128 printable ASCII characters without spaces")
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The correlation id of a business event (a lottery draw, an offer purchase) recorded on
/// the item events it caused: at most 128 printable ASCII characters (spaces allowed);
/// empty for none (docs/items.md, "Correlation ids").
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// Validates the shape.
    pub fn parse(id: &str) -> Result<Self, &'static str> {
        if id.len() <= 128 && id.bytes().all(|byte| byte == b' ' || byte.is_ascii_graphic()) {
            Ok(Self(id.to_owned()))
        } else {
            Err("must be at most 128 printable ASCII characters")
        }
    }

    /// The id (empty for none).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for "none".
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The holder of a lock: `<namespace>:<reference>` (`market:listing:<id>`,
/// `redemption:<order_id>`), at most 200 printable ASCII characters without spaces; the
/// namespace is a lowercase letter then lowercase letters, digits, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Holder(String);

impl Holder {
    /// Validates the shape.
    pub fn parse(holder: &str) -> Result<Self, &'static str> {
        const SHAPE: &str = "must be <namespace>:<reference>, at most 200 printable ASCII characters without spaces";
        let (namespace, reference) = holder.split_once(':').ok_or(SHAPE)?;
        let namespace_ok = namespace.bytes().next().is_some_and(|byte| byte.is_ascii_lowercase())
            && namespace
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_-".contains(&byte));
        let reference_ok = !reference.is_empty() && reference.bytes().all(|byte| byte.is_ascii_graphic());
        if namespace_ok && reference_ok && holder.len() <= 200 { Ok(Self(holder.to_owned())) } else { Err(SHAPE) }
    }

    /// The holder.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// An UPPER_SNAKE business type (`ITEM_GRANT`, `MARKET_PURCHASE`), at most 64 characters.
pub fn parse_business_type(value: &str) -> Result<String, &'static str> {
    let valid = (1..=64).contains(&value.len())
        && value.bytes().next().is_some_and(|byte| byte.is_ascii_uppercase())
        && value.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit() || byte == b'_');
    if valid { Ok(value.to_owned()) } else { Err("must be UPPER_SNAKE, at most 64 characters") }
}

/// Largest number of metadata entries of a template or instance.
pub const MAX_METADATA_ENTRIES: usize = 32;

/// Template or instance metadata: at most 32 entries, keys 1-64 bytes, values at most
/// 1024 bytes; kept sorted by key.
pub fn parse_metadata<'a>(
    entries: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<BTreeMap<String, String>, &'static str> {
    if entries.len() > MAX_METADATA_ENTRIES {
        return Err("at most 32 entries");
    }
    entries
        .map(|(key, value)| {
            if (1..=64).contains(&key.len()) && value.len() <= 1024 {
                Ok((key.clone(), value.clone()))
            } else {
                Err("keys must be 1-64 bytes, values at most 1024")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_codes() {
        assert!(TemplateCode::parse("coffee_voucher").is_ok());
        assert!(TemplateCode::parse("Prize2").is_ok());
        for bad in ["", "1abc", "_x", "a-b", "a b", &"a".repeat(65)] {
            assert!(TemplateCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn holders() {
        for good in ["market:listing:0190", "redemption:abc-123", "ops-team_2:x"] {
            assert_eq!(Holder::parse(good).map(|holder| holder.to_string()), Ok(good.to_owned()));
        }
        for bad in ["", "market", ":x", "market:", "Market:x", "1m:x", "market:a b", &format!("m:{}", "x".repeat(199))]
        {
            assert!(Holder::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_keys_and_ids() {
        assert!(UserId::parse(0).is_err());
        assert_eq!(UserId::parse(7).map(UserId::get), Ok(7));
        assert!(IdempotencyKey::parse("idem_0190").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
        let id = ItemId::parse("0190F0A4-2B9C-7D1E-8F00-0123456789AB").expect("uuid");
        assert_eq!(id.as_str(), "0190f0a4-2b9c-7d1e-8f00-0123456789ab");
        assert!(ItemId::parse("nope").is_err());
    }

    #[test]
    fn correlation_ids() {
        for good in ["", "draw 2026-12-07", "exchange:0190f0a4", &"c".repeat(128)] {
            assert_eq!(CorrelationId::parse(good).map(|id| id.as_str().to_owned()), Ok(good.to_owned()));
        }
        for bad in ["tab\there", "new\nline", "caf\u{e9}", &"c".repeat(129)] {
            assert!(CorrelationId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn business_types_and_metadata() {
        assert!(parse_business_type("MARKET_PURCHASE").is_ok());
        assert!(parse_business_type("market").is_err());
        let ok: BTreeMap<String, String> = [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        assert_eq!(parse_metadata(ok.iter()).map(|parsed| parsed.len()), Ok(2));
        let empty_key: BTreeMap<String, String> = [(String::new(), "x".into())].into();
        assert!(parse_metadata(empty_key.iter()).is_err());
        let many: BTreeMap<String, String> = (0..33).map(|index| (format!("k{index}"), String::new())).collect();
        assert!(parse_metadata(many.iter()).is_err());
    }
}
