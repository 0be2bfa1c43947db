//! Checks every row before anything is sent (docs/import.md, "Checks"): the shapes the
//! services would refuse, duplicate external ids within a file, and the links between
//! files (an order's item, a locked item's pending order). A code given in plaintext is
//! hashed here and dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use economy_redemption::domain::import::code_hash;

use super::format::{
    self, AssetRow, BadRow, BalanceRow, ItemRow, Line, ORDERS, OrderRow, TemplateRow, TotalRow, instant,
};

/// `locked_for_redemption`: an item held by a pending order.
pub const LOCKED: &str = "locked_for_redemption";
/// The item statuses of the files.
pub const ITEM_STATUSES: [&str; 5] = ["available", LOCKED, "used", "expired", "revoked"];

/// An order ready to send: its code only as a hash.
#[derive(Debug, Clone)]
pub struct Order {
    /// The row (its `code` emptied).
    pub row: OrderRow,
    /// SHA-256 of the normalized code.
    pub code_hash: String,
    /// Creation, expiry and fulfilment, ms since the epoch.
    pub created_at: i64,
    /// When the code stops redeeming.
    pub expires_at: i64,
    /// When a fulfilled order was redeemed.
    pub fulfilled_at: Option<i64>,
}

/// An item ready to send.
#[derive(Debug, Clone)]
pub struct Item {
    /// The row.
    pub row: ItemRow,
    /// Grant and expiry, ms since the epoch.
    pub granted_at: i64,
    /// Expiry; `None` for never.
    pub expires_at: Option<i64>,
}

/// Everything read from a directory: the rows to send, and the bad ones.
#[derive(Debug, Default)]
pub struct Plan {
    /// The manifest's `source`.
    pub source: String,
    /// Asset catalog.
    pub assets: Vec<Line<AssetRow>>,
    /// Opening balances (positive amounts).
    pub balances: Vec<Line<BalanceRow>>,
    /// Item templates.
    pub templates: Vec<Line<TemplateRow>>,
    /// Item instances.
    pub items: Vec<Line<Item>>,
    /// Redemption orders.
    pub orders: Vec<Line<Order>>,
    /// Legacy totals.
    pub totals: Vec<Line<TotalRow>>,
    /// The file side of the report: every parsed row, good or bad.
    pub file: super::report::Totals,
    /// Rows refused so far.
    pub bad: Vec<BadRow>,
}

fn bad(file: &'static str, line: usize, message: impl Into<String>) -> BadRow {
    BadRow { file, line, reason: "VALIDATION_FAILED".into(), message: message.into() }
}

/// Reads and checks the directory.
pub fn read(dir: &Path) -> anyhow::Result<Plan> {
    let manifest = format::manifest(dir)?;
    let mut plan = Plan { source: manifest.source, ..Plan::default() };
    let (assets, bad_assets) = format::read::<AssetRow>(dir, format::ASSETS)?;
    let (templates, bad_templates) = format::read::<TemplateRow>(dir, format::TEMPLATES)?;
    let (totals, bad_totals) = format::read::<TotalRow>(dir, format::TOTALS)?;
    let (balances, bad_balances) = format::read::<BalanceRow>(dir, format::BALANCES)?;
    let (items, bad_items) = format::read::<ItemRow>(dir, format::ITEMS)?;
    let (orders, bad_orders) = format::read::<OrderRow>(dir, format::ORDERS)?;
    plan.bad.extend(bad_assets.into_iter().chain(bad_templates).chain(bad_totals));
    plan.bad.extend(bad_balances.into_iter().chain(bad_items).chain(bad_orders));
    (plan.assets, plan.templates, plan.totals) = (assets, templates, totals);
    check_balances(&mut plan, balances);
    let items = check_items(&mut plan, items);
    check_orders(&mut plan, orders, items);
    plan.bad.sort_by(|left, right| (left.file, left.line).cmp(&(right.file, right.line)));
    Ok(plan)
}

/// Whether `id` is a fresh, well-formed external id of `file` (else a bad row).
fn fresh_id(seen: &HashMap<String, usize>, id: &str, max: usize) -> Result<(), String> {
    let valid = (1..=max).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_graphic());
    if !valid {
        return Err(format!("external_id: must be 1-{max} printable ASCII characters without spaces"));
    }
    match seen.get(id) {
        Some(first) => Err(format!("external_id: {id} is already on line {first}")),
        None => Ok(()),
    }
}

fn check_balances(plan: &mut Plan, rows: Vec<Line<BalanceRow>>) {
    let mut seen = HashMap::new();
    for Line { line, row } in rows {
        plan.file.balance(&row.asset_code, row.amount);
        let verdict = fresh_id(&seen, &row.external_id, 100).and_then(|()| {
            let ok = row.user_id > 0 && row.amount >= 0;
            ok.then_some(()).ok_or_else(|| "user_id must be positive and amount not negative".to_owned())
        });
        seen.entry(row.external_id.clone()).or_insert(line);
        match verdict {
            Err(message) => plan.bad.push(bad(format::BALANCES, line, message)),
            // A zero balance is nothing to post; it counts as imported.
            Ok(()) if row.amount == 0 => {}
            Ok(()) => plan.balances.push(Line { line, row }),
        }
    }
}

fn check_items(plan: &mut Plan, rows: Vec<Line<ItemRow>>) -> HashMap<String, Line<Item>> {
    let mut seen = HashMap::new();
    let mut valid = HashMap::new();
    for Line { line, row } in rows {
        plan.file.item(&row.template_code, &row.status);
        let verdict = fresh_id(&seen, &row.external_id, 120).and_then(|()| item(&row));
        seen.entry(row.external_id.clone()).or_insert(line);
        match verdict {
            Ok((granted_at, expires_at)) => {
                valid.insert(row.external_id.clone(), Line { line, row: Item { row, granted_at, expires_at } });
            }
            Err(message) => plan.bad.push(bad(format::ITEMS, line, message)),
        }
    }
    valid
}

fn item(row: &ItemRow) -> Result<(i64, Option<i64>), String> {
    if !ITEM_STATUSES.contains(&row.status.as_str()) {
        return Err(format!("status: must be one of {}", ITEM_STATUSES.join(", ")));
    }
    if row.owner_user_id <= 0 {
        return Err("owner_user_id: must be positive".into());
    }
    let granted_at = instant(&row.granted_at).map_err(|error| format!("granted_at: {error}"))?;
    let expires_at =
        row.expires_at.as_deref().map(instant).transpose().map_err(|error| format!("expires_at: {error}"))?;
    Ok((granted_at, expires_at))
}

fn check_orders(plan: &mut Plan, rows: Vec<Line<OrderRow>>, mut items: HashMap<String, Line<Item>>) {
    let mut seen = HashMap::new();
    let mut holding: HashSet<String> = HashSet::new();
    let mut orders = Vec::new();
    for Line { line, row } in rows {
        plan.file.order(&row.status);
        let verdict = fresh_id(&seen, &row.external_id, 120).and_then(|()| order(&row, &items, &holding));
        seen.entry(row.external_id.clone()).or_insert(line);
        match verdict {
            Ok(order) => {
                if order.row.status == "pending" {
                    holding.insert(order.row.item_external_id.clone());
                }
                orders.push(Line { line, row: order });
            }
            Err(message) => plan.bad.push(bad(ORDERS, line, message)),
        }
    }
    for (external_id, Line { line, row }) in items.drain() {
        if row.row.status == LOCKED && !holding.contains(&external_id) {
            plan.bad.push(bad(
                format::ITEMS,
                line,
                format!("status: {LOCKED} item {external_id} has no pending order"),
            ));
        } else {
            plan.items.push(Line { line, row });
        }
    }
    plan.items.sort_by_key(|line| line.line);
    plan.orders = orders;
}

fn order(row: &OrderRow, items: &HashMap<String, Line<Item>>, holding: &HashSet<String>) -> Result<Order, String> {
    let item = items
        .get(&row.item_external_id)
        .ok_or_else(|| format!("item_external_id: {} is not a valid row of {}", row.item_external_id, format::ITEMS))?;
    let wanted = match row.status.as_str() {
        "pending" => LOCKED,
        "fulfilled" => "used",
        _ => return Err("status: must be pending or fulfilled".into()),
    };
    if item.row.row.status != wanted {
        return Err(format!(
            "status: a {} order needs a {wanted} item, {} is {}",
            row.status, row.item_external_id, item.row.row.status
        ));
    }
    if row.status == "pending" && holding.contains(&row.item_external_id) {
        return Err(format!("item_external_id: {} already has a pending order", row.item_external_id));
    }
    if row.owner_user_id != item.row.row.owner_user_id {
        return Err("owner_user_id: is not the item's owner".into());
    }
    let hash = code_hash(row.code.as_deref().unwrap_or_default(), row.code_sha256.as_deref().unwrap_or_default())
        .map_err(|error| format!("code: {error}"))?;
    let created_at = instant(&row.created_at).map_err(|error| format!("created_at: {error}"))?;
    let expires_at = instant(&row.expires_at).map_err(|error| format!("expires_at: {error}"))?;
    let fulfilled_at =
        row.fulfilled_at.as_deref().map(instant).transpose().map_err(|error| format!("fulfilled_at: {error}"))?;
    if expires_at <= created_at {
        return Err("expires_at: must be after created_at".into());
    }
    if fulfilled_at.is_some() != (row.status == "fulfilled") {
        return Err("fulfilled_at: required for fulfilled orders, absent for pending ones".into());
    }
    let row = OrderRow { code: None, code_sha256: None, ..row.clone() };
    Ok(Order { row, code_hash: hash, created_at, expires_at, fulfilled_at })
}

/// The items' statuses per template of the file, for the dry run's summary.
pub fn status_counts(plan: &Plan) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in &plan.items {
        *counts.entry(line.row.row.status.clone()).or_default() += 1;
    }
    counts
}
