//! The import files of the `import` scenario: a legacy economy of `balances` opening
//! balances and `items` item instances in the format of docs/import.md (version 1), with
//! a pending redemption order for every 20th item (locked for it), a fulfilled one for
//! every 20th other (used), and the legacy totals of each asset.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;

/// Assets the balances alternate between.
const ASSETS: [&str; 2] = ["POINTS", "GEMS"];
/// Every item's template (redeemable: orders are imported for some).
const TEMPLATE: &str = "voucher";
/// One item in this many is locked for a pending order, one more used by a fulfilled one.
const ORDER_EVERY: u64 = 20;

/// What the files hold, for checking the import's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows of `balances.jsonl`.
    pub balances: u64,
    /// Rows of `items.jsonl`.
    pub items: u64,
    /// Rows of `orders.jsonl`.
    pub orders: u64,
}

/// Writes the files for `balances` balances and `items` items into `dir` (created).
pub fn write(dir: &Path, balances: u64, items: u64) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = |name: &str| -> anyhow::Result<BufWriter<File>> {
        let path = dir.join(name);
        Ok(BufWriter::new(File::create(&path).with_context(|| format!("cannot create {}", path.display()))?))
    };
    let mut manifest = file("manifest.json")?;
    writeln!(manifest, r#"{{"format":"economy-import","version":1,"source":"economy-bench import"}}"#)?;
    let mut assets = file("assets.jsonl")?;
    for code in ASSETS {
        writeln!(assets, r#"{{"code":"{code}","display_name":"{code}","kind":"currency"}}"#)?;
    }
    let mut templates = file("item_templates.jsonl")?;
    writeln!(templates, r#"{{"code":"{TEMPLATE}","display_name":"Voucher","kind":"voucher","redeemable":true}}"#)?;
    let totals = write_balances(&mut file("balances.jsonl")?, balances)?;
    let mut legacy = file("totals.jsonl")?;
    for (asset, total) in totals {
        writeln!(legacy, r#"{{"kind":"balance","asset_code":"{asset}","total":{total}}}"#)?;
    }
    let orders = write_items(&mut file("items.jsonl")?, &mut file("orders.jsonl")?, items)?;
    for mut writer in [manifest, assets, templates, legacy] {
        writer.flush()?;
    }
    Ok(Written { balances, items, orders })
}

/// Balance `i`: user `i / 2 + 1`, the assets in turn, 1-1,000 units. The total per asset.
fn write_balances(out: &mut BufWriter<File>, balances: u64) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let mut totals = BTreeMap::new();
    for index in 0..balances {
        let asset = ASSETS[usize::from(index % 2 == 1)];
        let (user, amount) = (index / 2 + 1, index % 1_000 + 1);
        *totals.entry(asset).or_default() += amount;
        writeln!(out, r#"{{"external_id":"b-{index}","user_id":{user},"asset_code":"{asset}","amount":{amount}}}"#)?;
    }
    out.flush()?;
    Ok(totals)
}

/// Item `j`: owner `j + 1`; a pending order's, a fulfilled order's, or available, used or
/// expired in turn. The number of orders written.
fn write_items(items_out: &mut BufWriter<File>, orders_out: &mut BufWriter<File>, items: u64) -> anyhow::Result<u64> {
    let mut orders = 0;
    for index in 0..items {
        let owner = index + 1;
        let status = match (index % ORDER_EVERY, index % 3) {
            (0, _) => "locked_for_redemption",
            (1, _) | (_, 1) => "used",
            (_, 2) => "expired",
            _ => "available",
        };
        writeln!(
            items_out,
            r#"{{"external_id":"i-{index}","template_code":"{TEMPLATE}","owner_user_id":{owner},"status":"{status}","metadata":{{"serial":"{index}"}},"expires_at":"2030-01-01T00:00:00Z","granted_at":"2025-01-01T00:00:00Z"}}"#
        )?;
        let order = match index % ORDER_EVERY {
            0 => r#""status":"pending""#,
            1 => r#""status":"fulfilled","fulfilled_at":"2025-02-01T00:00:00Z""#,
            _ => continue,
        };
        // A unique stand-in for the SHA-256 of a legacy code (64 hex characters).
        let hash = format!("{index:064x}");
        writeln!(
            orders_out,
            r#"{{"external_id":"o-{index}","item_external_id":"i-{index}","owner_user_id":{owner},{order},"code_sha256":"{hash}","created_at":"2025-01-15T00:00:00Z","expires_at":"2030-01-01T00:00:00Z"}}"#
        )?;
        orders += 1;
    }
    items_out.flush()?;
    orders_out.flush()?;
    Ok(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(dir: &Path, name: &str) -> Vec<String> {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_files_hold_the_rows_asked_for_and_an_order_per_locked_or_redeemed_item() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("economy-bench-files-{}", uuid::Uuid::now_v7()));
        let written = write(&dir, 7, 45)?;
        assert_eq!(written, Written { balances: 7, items: 45, orders: 6 });
        assert_eq!((lines(&dir, "balances.jsonl").len(), lines(&dir, "items.jsonl").len()), (7, 45));
        let orders = lines(&dir, "orders.jsonl");
        let items = lines(&dir, "items.jsonl");
        for order in &orders {
            let pending = order.contains(r#""status":"pending""#);
            let item = order.split(r#""item_external_id":"i-"#).nth(1).and_then(|rest| rest.split('"').next());
            let item: usize = item.unwrap_or_default().parse()?;
            let status = if pending { "locked_for_redemption" } else { "used" };
            assert!(items[item].contains(&format!(r#""status":"{status}""#)), "{order} / {}", items[item]);
        }
        assert_eq!(lines(&dir, "totals.jsonl").len(), 2);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
