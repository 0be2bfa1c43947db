//! The import files (docs/import.md, "Format"), version 1: a `manifest.json` naming the
//! format and its version, and one JSON Lines file per kind. Each line is one object;
//! unknown fields are refused, so a misspelt field is a bad row, not a silent default.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The one format version this release reads.
pub const FORMAT_VERSION: u32 = 1;
/// `manifest.json`'s `format`.
pub const FORMAT_NAME: &str = "economy-import";

/// The files, in the order they are imported.
pub const ASSETS: &str = "assets.jsonl";
/// Opening balances.
pub const BALANCES: &str = "balances.jsonl";
/// Item templates.
pub const TEMPLATES: &str = "item_templates.jsonl";
/// Item instances.
pub const ITEMS: &str = "items.jsonl";
/// Redemption orders.
pub const ORDERS: &str = "orders.jsonl";
/// Optional totals of the legacy system, for checking.
pub const TOTALS: &str = "totals.jsonl";

/// `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Must be `economy-import`.
    pub format: String,
    /// Must be 1.
    pub version: u32,
    /// Free text: where the files come from.
    #[serde(default)]
    pub source: String,
}

/// One asset of the catalog (`DefineAsset`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetRow {
    /// Asset code.
    pub code: String,
    /// Display name.
    pub display_name: String,
    /// `currency`, `material`, `fragment` or `quota`.
    pub kind: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// One opening balance: a user's holding of one asset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceRow {
    /// The legacy row's id (1-100 printable ASCII characters).
    pub external_id: String,
    /// The user (positive).
    pub user_id: i64,
    /// The asset.
    pub asset_code: String,
    /// Positive amount in the asset's smallest unit.
    pub amount: i64,
}

/// One item template (`DefineTemplate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRow {
    /// Template code.
    pub code: String,
    /// Display name.
    pub display_name: String,
    /// `voucher`, `product`, `service`, `equipment`, `card` or `other`.
    pub kind: String,
    /// Validity of a newly granted instance, seconds (0: never expires).
    #[serde(default)]
    pub default_validity_seconds: i64,
    /// Whether instances redeem with a code.
    #[serde(default)]
    pub redeemable: bool,
    /// Whether owners consume instances directly.
    #[serde(default)]
    pub consumable: bool,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// One item instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRow {
    /// The legacy id (1-120 printable ASCII characters).
    pub external_id: String,
    /// Its template.
    pub template_code: String,
    /// The owner (positive).
    pub owner_user_id: i64,
    /// `available`, `locked_for_redemption`, `used`, `expired` or `revoked`.
    pub status: String,
    /// Instance metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339 UTC instant it expires; absent or null for never.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// RFC 3339 UTC instant it was granted.
    pub granted_at: String,
}

/// One redemption order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRow {
    /// The legacy id (1-120 printable ASCII characters).
    pub external_id: String,
    /// The `external_id` of its item in the items file.
    pub item_external_id: String,
    /// The item's owner.
    pub owner_user_id: i64,
    /// `pending` or `fulfilled`.
    pub status: String,
    /// The code in plaintext (hashed on read; never sent, stored or printed).
    #[serde(default)]
    pub code: Option<String>,
    /// Or its SHA-256, 64 hex characters.
    #[serde(default)]
    pub code_sha256: Option<String>,
    /// RFC 3339 UTC creation instant.
    pub created_at: String,
    /// RFC 3339 UTC instant the code stops redeeming.
    pub expires_at: String,
    /// RFC 3339 UTC instant a fulfilled order was redeemed.
    #[serde(default)]
    pub fulfilled_at: Option<String>,
    /// The staff user who redeemed it, when known.
    #[serde(default)]
    pub redeemer_user_id: Option<i64>,
}

/// One total of the legacy system.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TotalRow {
    /// The sum of every balance of an asset.
    Balance {
        /// The asset.
        asset_code: String,
        /// The sum.
        total: i64,
    },
    /// The number of items of a template in a status.
    Items {
        /// The template.
        template_code: String,
        /// The status, as in the items file.
        status: String,
        /// The count.
        count: u64,
    },
    /// The number of orders in a status.
    Orders {
        /// `pending` or `fulfilled`.
        status: String,
        /// The count.
        count: u64,
    },
}

/// A row refused before or during the import: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The file name.
    pub file: &'static str,
    /// 1-based line number.
    pub line: usize,
    /// Stable reason (`VALIDATION_FAILED`, a service's reason).
    pub reason: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}: {} {}", self.file, self.line, self.reason, self.message)
    }
}

/// A parsed row and its line.
#[derive(Debug, Clone)]
pub struct Line<T> {
    /// 1-based line number.
    pub line: usize,
    /// The row.
    pub row: T,
}

/// Reads `manifest.json` and checks the format and version.
pub fn manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    anyhow::ensure!(
        manifest.format == FORMAT_NAME && manifest.version == FORMAT_VERSION,
        "{}: format {:?} version {} is not {FORMAT_NAME:?} version {FORMAT_VERSION}",
        path.display(),
        manifest.format,
        manifest.version
    );
    Ok(manifest)
}

/// Every row of `dir/file` (absent: none), and a bad row for each line that does not
/// parse. Blank lines are skipped.
pub fn read<T: DeserializeOwned>(dir: &Path, file: &'static str) -> anyhow::Result<(Vec<Line<T>>, Vec<BadRow>)> {
    let path = dir.join(file);
    if !path.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    let text =
        std::fs::read_to_string(&path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    let (mut rows, mut bad) = (Vec::new(), Vec::new());
    for (index, text) in text.lines().enumerate().filter(|(_, text)| !text.trim().is_empty()) {
        match serde_json::from_str::<T>(text) {
            Ok(row) => rows.push(Line { line: index + 1, row }),
            Err(error) => bad.push(BadRow {
                file,
                line: index + 1,
                reason: "VALIDATION_FAILED".into(),
                message: redact(&error.to_string()),
            }),
        }
    }
    Ok((rows, bad))
}

/// serde_json's message without the offending value (it may be a code in plaintext):
/// "invalid type: string \"…\", expected …" keeps only the type. Unknown fields and
/// variants stay named (they are field names, not data).
fn redact(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: ")) else {
        return message.to_owned();
    };
    let kind = rest.split([' ', ',']).next().unwrap_or_default();
    let expected = rest.find(", expected").map_or("", |at| &rest[at..]);
    format!("invalid value ({kind}){expected}")
}

/// Milliseconds since the epoch of an RFC 3339 UTC instant (`2024-05-01T12:00:00Z`).
pub fn instant(value: &str) -> Result<i64, String> {
    let time = humantime::parse_rfc3339(value).map_err(|_| format!("{value:?} is not an RFC 3339 UTC instant"))?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{value:?} is before 1970"))?;
    i64::try_from(since.as_millis()).map_err(|_| format!("{value:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_utc() {
        assert_eq!(instant("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(instant("2024-05-01T12:00:00.250Z"), Ok(1_714_564_800_250));
        assert!(instant("2024-05-01 12:00").is_err());
    }

    #[test]
    fn bad_values_are_not_repeated() {
        let error =
            serde_json::from_str::<BalanceRow>(r#"{"external_id":"b","user_id":"SECRET","asset_code":"P","amount":1}"#)
                .expect_err("bad");
        let message = redact(&error.to_string());
        assert!(!message.contains("SECRET") && message.contains("expected i64"), "{message}");
    }

    #[test]
    fn totals_are_tagged_by_kind() {
        let total: TotalRow = serde_json::from_str(r#"{"kind":"orders","status":"pending","count":3}"#).expect("row");
        assert!(matches!(total, TotalRow::Orders { count: 3, .. }));
        assert!(
            serde_json::from_str::<BalanceRow>(r#"{"external_id":"b","user_id":1,"asset_code":"P","amount":1,"x":1}"#)
                .is_err()
        );
    }
}
