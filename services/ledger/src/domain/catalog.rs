//! The asset catalog and conversion rules (docs/ledger.md, "Assets", "Conversions": each
//! asset has a code, display name, kind currency|material|fragment|quota and metadata;
//! `ASSET_CONVERT`, e.g. 10 red_shard -> 1 red_crystal).

use std::collections::BTreeMap;

use super::ids::{AssetCode, RuleId};

/// Classification of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    /// POINTS, DIAMOND.
    Currency,
    /// Crafting material.
    Material,
    /// Fragment that converts into something else.
    Fragment,
    /// Quota or allowance.
    Quota,
}

impl AssetKind {
    /// Storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Currency => "currency",
            Self::Material => "material",
            Self::Fragment => "fragment",
            Self::Quota => "quota",
        }
    }

    /// Parses the storage spelling.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Currency, Self::Material, Self::Fragment, Self::Quota].into_iter().find(|kind| kind.as_str() == value)
    }
}

/// A catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Unique code.
    pub code: AssetCode,
    /// Human-readable name (1-128 characters).
    pub display_name: String,
    /// Classification.
    pub kind: AssetKind,
    /// Free-form metadata, sorted by key.
    pub metadata: BTreeMap<String, String>,
    /// First definition, ms since the epoch.
    pub created_at: i64,
}

/// `from_amount` of `from_asset` converts into `to_amount` of `to_asset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionRule {
    /// Unique id.
    pub id: RuleId,
    /// Asset burned.
    pub from_asset: AssetCode,
    /// Units burned per conversion (> 0).
    pub from_amount: i64,
    /// Asset minted.
    pub to_asset: AssetCode,
    /// Units minted per conversion (> 0).
    pub to_amount: i64,
    /// Whether conversions are accepted.
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_spellings_round_trip() {
        for kind in [AssetKind::Currency, AssetKind::Material, AssetKind::Fragment, AssetKind::Quota] {
            assert_eq!(AssetKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AssetKind::parse("coin"), None);
    }
}
