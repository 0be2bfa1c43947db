//! Pure parsers of command-line values (`ASSET:AMOUNT`, `key=value`, asset kinds, hold
//! statuses). Each returns a message for clap on bad input and never panics; the ledger
//! still validates codes and amounts itself (docs/ledger.md).

use clap::ValueEnum;
use economy_proto::ledger::v1 as pb;

/// An amount of one asset, written `ASSET:AMOUNT` (e.g. `red_shard:10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetAmount {
    /// Asset code.
    pub asset: String,
    /// Positive amount in the asset's smallest unit.
    pub amount: i64,
}

/// Parses `ASSET:AMOUNT`: a non-empty asset code, a colon, a positive integer.
pub fn asset_amount(value: &str) -> Result<AssetAmount, String> {
    let (asset, amount) =
        value.rsplit_once(':').ok_or_else(|| format!("expected ASSET:AMOUNT (e.g. red_shard:10), got `{value}`"))?;
    let asset = asset.trim();
    if asset.is_empty() {
        return Err(format!("missing asset code in `{value}`"));
    }
    let amount = amount.trim().parse::<i64>().map_err(|_| format!("`{amount}` is not a whole number"))?;
    if amount <= 0 {
        return Err(format!("amount must be positive, got {amount}"));
    }
    Ok(AssetAmount { asset: asset.to_owned(), amount })
}

/// Parses `key=value` (a non-empty key; the value may be empty and may contain `=`).
pub fn key_value(value: &str) -> Result<(String, String), String> {
    let (key, rest) = value.split_once('=').ok_or_else(|| format!("expected key=value, got `{value}`"))?;
    if key.is_empty() {
        return Err(format!("missing key in `{value}`"));
    }
    Ok((key.to_owned(), rest.to_owned()))
}

/// Parses a positive whole number (amounts, quantities).
pub fn positive(value: &str) -> Result<i64, String> {
    match value.trim().parse::<i64>() {
        Ok(number) if number > 0 => Ok(number),
        Ok(number) => Err(format!("must be positive, got {number}")),
        Err(_) => Err(format!("`{value}` is not a whole number")),
    }
}

/// Asset kind as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A currency (POINTS, DIAMOND).
    Currency,
    /// A crafting material.
    Material,
    /// A fragment that converts into something else.
    Fragment,
    /// A quota or allowance.
    Quota,
}

impl From<Kind> for pb::AssetKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Currency => Self::Currency,
            Kind::Material => Self::Material,
            Kind::Fragment => Self::Fragment,
            Kind::Quota => Self::Quota,
        }
    }
}

/// Hold status filter as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HoldStatus {
    /// Frozen, not yet resolved.
    Open,
    /// Paid out (all or part).
    Settled,
    /// Released back to available.
    Released,
    /// Released by the expiry job.
    Expired,
}

impl From<HoldStatus> for pb::HoldStatus {
    fn from(status: HoldStatus) -> Self {
        match status {
            HoldStatus::Open => Self::Open,
            HoldStatus::Settled => Self::Settled,
            HoldStatus::Released => Self::Released,
            HoldStatus::Expired => Self::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_amount_accepts_code_and_positive_amount() {
        assert_eq!(asset_amount("red_shard:10"), Ok(AssetAmount { asset: "red_shard".into(), amount: 10 }));
        assert_eq!(asset_amount("POINTS: 7"), Ok(AssetAmount { asset: "POINTS".into(), amount: 7 }));
    }

    #[test]
    fn asset_amount_rejects_bad_shapes() {
        for bad in ["", "red_shard", ":10", "red_shard:", "red_shard:0", "red_shard:-3", "red_shard:x", "a:1.5"] {
            assert!(asset_amount(bad).is_err(), "{bad}");
        }
        assert!(asset_amount("red_shard:99999999999999999999").is_err());
    }

    #[test]
    fn key_value_splits_on_the_first_equals() {
        assert_eq!(key_value("color=red"), Ok(("color".into(), "red".into())));
        assert_eq!(key_value("expr=a=b"), Ok(("expr".into(), "a=b".into())));
        assert_eq!(key_value("empty="), Ok(("empty".into(), String::new())));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=x").is_err());
    }

    #[test]
    fn positive_rejects_zero_negative_and_garbage() {
        assert_eq!(positive("42"), Ok(42));
        for bad in ["0", "-1", "", "ten", "1e3"] {
            assert!(positive(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_parse_and_map_to_the_proto() {
        let cases = [
            ("currency", pb::AssetKind::Currency),
            ("material", pb::AssetKind::Material),
            ("fragment", pb::AssetKind::Fragment),
            ("quota", pb::AssetKind::Quota),
        ];
        for (text, expected) in cases {
            let kind = Kind::from_str(text, false).map(pb::AssetKind::from);
            assert_eq!(kind, Ok(expected), "{text}");
        }
        assert!(Kind::from_str("gem", false).is_err());
    }

    #[test]
    fn hold_statuses_parse_and_map_to_the_proto() {
        assert_eq!(HoldStatus::from_str("open", false).map(pb::HoldStatus::from), Ok(pb::HoldStatus::Open));
        assert_eq!(HoldStatus::from_str("expired", false).map(pb::HoldStatus::from), Ok(pb::HoldStatus::Expired));
        assert!(HoldStatus::from_str("closed", false).is_err());
    }
}
