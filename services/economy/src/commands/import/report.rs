//! The import report (docs/import.md, "The report"): totals per asset, item counts per
//! template and status and order counts per status, as the files hold them and as the
//! services confirmed them (a row created now, or found imported before with the same
//! content), plus the legacy totals when given. Any difference or bad row fails the run.

use std::collections::BTreeMap;

use super::format::{BadRow, Line, TotalRow};

/// One side of the comparison.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Sum of amounts per asset.
    pub balances: BTreeMap<String, i128>,
    /// Count per (template, status).
    pub items: BTreeMap<(String, String), u64>,
    /// Count per order status.
    pub orders: BTreeMap<String, u64>,
}

impl Totals {
    /// Adds one balance.
    pub fn balance(&mut self, asset: &str, amount: i64) {
        *self.balances.entry(asset.to_owned()).or_default() += i128::from(amount);
    }

    /// Adds one item.
    pub fn item(&mut self, template: &str, status: &str) {
        *self.items.entry((template.to_owned(), status.to_owned())).or_default() += 1;
    }

    /// Adds one order.
    pub fn order(&mut self, status: &str) {
        *self.orders.entry(status.to_owned()).or_default() += 1;
    }

    /// The legacy totals as a `Totals` (only the kinds given).
    pub fn from_rows(rows: &[Line<TotalRow>]) -> Self {
        let mut totals = Self::default();
        for line in rows {
            match &line.row {
                TotalRow::Balance { asset_code, total } => {
                    *totals.balances.entry(asset_code.clone()).or_default() += i128::from(*total);
                }
                TotalRow::Items { template_code, status, count } => {
                    *totals.items.entry((template_code.clone(), status.clone())).or_default() += count;
                }
                TotalRow::Orders { status, count } => *totals.orders.entry(status.clone()).or_default() += count,
            }
        }
        totals
    }
}

/// Lines comparing `left` and `right` named `names`; the number of differences.
fn compare<K: Ord + Clone, V: PartialEq + Default + Copy + std::fmt::Display>(
    out: &mut Vec<String>,
    what: &str,
    names: (&str, &str),
    left: &BTreeMap<K, V>,
    right: &BTreeMap<K, V>,
    label: impl Fn(&K) -> String,
) -> usize {
    let mut keys: Vec<&K> = left.keys().chain(right.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut differences = 0;
    for key in keys {
        let (a, b) = (left.get(key).copied().unwrap_or_default(), right.get(key).copied().unwrap_or_default());
        let verdict = if a == b { "ok" } else { "DIFFERENT" };
        differences += usize::from(a != b);
        out.push(format!("{what:<9} {:<32} {}={a:<10} {}={b:<10} {verdict}", label(key), names.0, names.1));
    }
    differences
}

/// The report's lines and whether it is clean.
pub fn render(file: &Totals, imported: &Totals, legacy: Option<&Totals>, bad: &[BadRow]) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let names = ("file", "imported");
    let mut differences = compare(&mut out, "balance", names, &file.balances, &imported.balances, Clone::clone);
    differences += compare(&mut out, "items", names, &file.items, &imported.items, |(t, s)| format!("{t} {s}"));
    differences += compare(&mut out, "orders", names, &file.orders, &imported.orders, Clone::clone);
    if let Some(legacy) = legacy {
        let names = ("totals", "file");
        let legacy_balances =
            legacy.balances.keys().map(|key| (key.clone(), file.balances.get(key).copied().unwrap_or_default()));
        let file_balances: BTreeMap<_, _> = legacy_balances.collect();
        differences += compare(&mut out, "total", names, &legacy.balances, &file_balances, Clone::clone);
        let file_items = legacy.items.keys().map(|key| (key.clone(), file.items.get(key).copied().unwrap_or_default()));
        let file_items: BTreeMap<_, _> = file_items.collect();
        differences += compare(&mut out, "total", names, &legacy.items, &file_items, |(t, s)| format!("items {t} {s}"));
        let file_orders =
            legacy.orders.keys().map(|key| (key.clone(), file.orders.get(key).copied().unwrap_or_default()));
        let file_orders: BTreeMap<_, _> = file_orders.collect();
        differences += compare(&mut out, "total", names, &legacy.orders, &file_orders, |s| format!("orders {s}"));
    }
    out.push(format!("bad rows: {}", bad.len()));
    out.extend(bad.iter().map(|row| format!("  {row}")));
    let clean = differences == 0 && bad.is_empty();
    out.push(if clean {
        "import: clean".to_owned()
    } else {
        format!("import: {differences} difference(s), {} bad row(s)", bad.len())
    });
    (out, clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_bad_rows_make_it_unclean() {
        let mut file = Totals::default();
        file.balance("POINTS", 10);
        file.item("voucher", "used");
        let (_, clean) = render(&file, &file.clone(), None, &[]);
        assert!(clean);
        let mut short = file.clone();
        short.balance("POINTS", -1);
        let (lines, clean) = render(&file, &short, None, &[]);
        assert!(!clean && lines.iter().any(|line| line.contains("DIFFERENT")));
        let legacy = Totals { orders: [("pending".to_owned(), 1)].into(), ..Totals::default() };
        assert!(!render(&file, &file.clone(), Some(&legacy), &[]).1);
    }
}
