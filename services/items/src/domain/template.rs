//! The template catalog (docs/items.md, "Templates"): what an instance is,
//! how long it stays valid by default, and whether it is redeemable or consumable.

use std::collections::BTreeMap;

use super::ids::TemplateCode;

/// Longest default validity: 100 years, in seconds.
pub const MAX_VALIDITY_SECS: i64 = 100 * 366 * 24 * 3600;

/// Classification of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A voucher or coupon.
    Voucher,
    /// A physical product or prize.
    Product,
    /// A service entitlement.
    Service,
    /// A piece of equipment.
    Equipment,
    /// A membership or benefit card.
    Card,
    /// Anything else.
    Other,
}

impl ItemKind {
    const ALL: [Self; 6] = [Self::Voucher, Self::Product, Self::Service, Self::Equipment, Self::Card, Self::Other];

    /// Storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voucher => "voucher",
            Self::Product => "product",
            Self::Service => "service",
            Self::Equipment => "equipment",
            Self::Card => "card",
            Self::Other => "other",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// A catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Unique code.
    pub code: TemplateCode,
    /// Human-readable name (1-128 characters).
    pub display_name: String,
    /// Classification.
    pub kind: ItemKind,
    /// Validity of a new instance, seconds (0: never expires; at most `MAX_VALIDITY_SECS`).
    pub default_validity_secs: i64,
    /// Instances can be redeemed with a redemption code.
    pub redeemable: bool,
    /// The owner may consume an available instance directly.
    pub consumable: bool,
    /// Free-form metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
    /// First definition, ms since the epoch.
    pub created_at: i64,
    /// Last definition, ms since the epoch.
    pub updated_at: i64,
}

/// Validates a default validity in seconds: 0 (never) to `MAX_VALIDITY_SECS`.
pub fn parse_validity(seconds: i64) -> Result<i64, &'static str> {
    if (0..=MAX_VALIDITY_SECS).contains(&seconds) { Ok(seconds) } else { Err("must be 0 (never) to 100 years") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_spellings_round_trip() {
        for kind in ItemKind::ALL {
            assert_eq!(ItemKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ItemKind::parse("coin"), None);
    }

    #[test]
    fn validity_bounds() {
        assert_eq!(parse_validity(0), Ok(0));
        assert_eq!(parse_validity(MAX_VALIDITY_SECS), Ok(MAX_VALIDITY_SECS));
        assert!(parse_validity(-1).is_err());
        assert!(parse_validity(MAX_VALIDITY_SECS + 1).is_err());
    }
}
