//! `economy offer …`, `economy exchanges` and `economy bundle grant`: the platform's shop
//! and reward bundles (`economy.market.v1.MarketService`, proto/economy/market/v1/market.proto;
//! docs/market.md, "Offers" and "Exchanges").

use std::process::ExitCode;

use clap::{Args, Subcommand};
use economy_proto::market::v1 as pb;
use tonic_types::StatusExt;

use crate::client::{self, KeyArgs};
use crate::commands::market::Market;
use crate::output::{enum_name, timestamp};
use crate::parse::{self, AssetAmount};

/// `economy offer …`.
#[derive(Debug, Subcommand)]
pub enum OfferCommand {
    /// Define an offer, or replace its definition (admin; a PUT: units sold are kept).
    Define(Box<DefineOffer>),
    /// List the offers on sale now (`--all`: every offer).
    List(ListOffers),
    /// Show one offer.
    Get {
        /// The offer.
        id: String,
    },
    /// Stop an offer's sales (admin; `define` enables it again).
    Disable {
        /// The offer.
        id: String,
        /// Idempotency key.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Buy units of an offer (as `--user-id`): prints the exchange.
    Buy {
        /// The offer.
        id: String,
        /// Units to buy (1..100).
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse::positive)]
        quantity: i64,
        /// Idempotency key.
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// `economy offer define`.
#[derive(Debug, Args)]
pub struct DefineOffer {
    /// Offer id: 1-64 characters of A-Z a-z 0-9 `_` `-` `.`.
    pub id: String,
    /// Name shown to players.
    #[arg(long)]
    pub name: String,
    /// Price of one unit, `ASSET:AMOUNT`; repeat for a price in several assets.
    #[arg(long, required = true, value_name = "ASSET:AMOUNT", value_parser = parse::asset_amount)]
    pub price: Vec<AssetAmount>,
    /// Asset one unit gives, `ASSET:AMOUNT` (credited from SYSTEM_ISSUANCE); repeatable.
    #[arg(long, value_name = "ASSET:AMOUNT", value_parser = parse::asset_amount)]
    pub reward_asset: Vec<AssetAmount>,
    /// Item instances one unit gives, `TEMPLATE` or `TEMPLATE:QUANTITY`; repeatable.
    #[arg(long, value_name = "TEMPLATE[:QTY]", value_parser = item_reward)]
    pub reward_item: Vec<ItemSpec>,
    /// Units it may sell in all; unlimited when absent.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(0..))]
    pub stock: Option<i64>,
    /// Most units one user may buy in all.
    #[arg(long, value_name = "N", value_parser = parse::positive)]
    pub limit_total: Option<i64>,
    /// Most units one user may buy within any `--window-secs`.
    #[arg(long, value_name = "N", requires = "window_secs", value_parser = parse::positive)]
    pub limit_per_window: Option<i64>,
    /// The rolling window of `--limit-per-window`, seconds.
    #[arg(long, value_name = "SECS", requires = "limit_per_window", value_parser = parse::positive)]
    pub window_secs: Option<i64>,
    /// Sales start, RFC 3339 (e.g. `2026-12-24T00:00:00Z`).
    #[arg(long, value_name = "RFC3339", value_parser = instant)]
    pub starts_at: Option<prost_types::Timestamp>,
    /// Sales end (exclusive), RFC 3339.
    #[arg(long, value_name = "RFC3339", value_parser = instant)]
    pub ends_at: Option<prost_types::Timestamp>,
    /// Define it without selling it yet.
    #[arg(long)]
    pub disabled: bool,
    /// Display metadata `key=value`; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub meta: Vec<(String, String)>,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy offer list`.
#[derive(Debug, Args)]
pub struct ListOffers {
    /// Every offer, disabled and past ones included.
    #[arg(long)]
    pub all: bool,
    /// Offers per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// `economy exchanges`.
#[derive(Debug, Args)]
pub struct Exchanges {
    /// The user (default: `--user-id`).
    #[arg(long, default_value_t = 0)]
    pub user: i64,
    /// Show only this exchange.
    #[arg(long, conflicts_with_all = ["user", "stuck"])]
    pub id: Option<String>,
    /// Instead, the exchanges still unfinished this many seconds after their creation,
    /// oldest first (admin; default 300).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "300", conflicts_with = "user",
          value_parser = parse::positive)]
    pub stuck: Option<i64>,
    /// Exchanges per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// `economy bundle …`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Give a user assets and items as one business event, exactly once (admin).
    Grant(GrantBundle),
}

/// `economy bundle grant`.
#[derive(Debug, Args)]
pub struct GrantBundle {
    /// The receiver.
    #[arg(long, value_parser = parse::positive)]
    pub user: i64,
    /// An asset amount to credit, `ASSET:AMOUNT`; repeatable.
    #[arg(long, value_name = "ASSET:AMOUNT", value_parser = parse::asset_amount)]
    pub asset: Vec<AssetAmount>,
    /// Item instances to grant, `TEMPLATE` or `TEMPLATE:QUANTITY`; repeatable.
    #[arg(long, value_name = "TEMPLATE[:QTY]", value_parser = item_reward)]
    pub item: Vec<ItemSpec>,
    /// UPPER_SNAKE business type of its ledger entries and item events [default: REWARD_BUNDLE].
    #[arg(long, default_value = "")]
    pub business_type: String,
    /// Correlation id of the business event (e.g. the lottery draw) [default: the
    /// idempotency key's business event].
    #[arg(long, default_value = "")]
    pub correlation: String,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Instances of one item template, written `TEMPLATE[:QUANTITY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSpec {
    /// Template code.
    pub template: String,
    /// Instances, at least 1.
    pub quantity: i64,
}

/// Parses `TEMPLATE` or `TEMPLATE:QUANTITY` (a non-empty code, a positive quantity).
pub fn item_reward(value: &str) -> Result<ItemSpec, String> {
    let (template, quantity) = match value.rsplit_once(':') {
        Some((template, quantity)) => (template.trim(), parse::positive(quantity)?),
        None => (value.trim(), 1),
    };
    if template.is_empty() {
        return Err(format!("missing template code in `{value}`"));
    }
    Ok(ItemSpec { template: template.to_owned(), quantity })
}

/// Parses an RFC 3339 instant (`2026-12-24T00:00:00Z`, `2026-12-24T01:00:00+01:00`).
pub fn instant(value: &str) -> Result<prost_types::Timestamp, String> {
    value.trim().parse().map_err(|_| format!("`{value}` is not an RFC 3339 instant (e.g. 2026-12-24T00:00:00Z)"))
}

fn amounts(amounts: Vec<AssetAmount>) -> Vec<pb::AssetAmount> {
    amounts.into_iter().map(|each| pb::AssetAmount { asset_code: each.asset, amount: each.amount }).collect()
}

fn reward(assets: Vec<AssetAmount>, items: Vec<ItemSpec>) -> pb::Reward {
    let items = items.into_iter().map(|item| pb::ItemReward {
        template_code: item.template,
        quantity: item.quantity,
        ..Default::default()
    });
    pb::Reward { assets: amounts(assets), items: items.collect() }
}

/// The DefineOffer request of `args`, and its key.
fn define_request(args: DefineOffer) -> (pb::DefineOfferRequest, KeyArgs) {
    let limit = pb::PurchaseLimit {
        total: args.limit_total.unwrap_or(0),
        per_window: args.limit_per_window.unwrap_or(0),
        window_seconds: args.window_secs.unwrap_or(0),
    };
    let request = pb::DefineOfferRequest {
        offer_id: args.id,
        display_name: args.name,
        price: amounts(args.price),
        reward: Some(reward(args.reward_asset, args.reward_item)),
        stock: args.stock,
        limit: Some(limit),
        starts_at: args.starts_at,
        ends_at: args.ends_at,
        enabled: Some(!args.disabled),
        metadata: args.meta.into_iter().collect(),
    };
    (request, args.key)
}

/// `100 POINTS + 5 DIAMOND`, or `nothing`.
fn amounts_text(amounts: &[pb::AssetAmount]) -> String {
    let parts: Vec<String> = amounts.iter().map(|each| format!("{} {}", each.amount, each.asset_code)).collect();
    if parts.is_empty() { "nothing".to_owned() } else { parts.join(" + ") }
}

/// `10 red_shard + sword x2`.
fn reward_text(reward: Option<&pb::Reward>) -> String {
    let Some(reward) = reward else { return "nothing".to_owned() };
    let assets = reward.assets.iter().map(|each| format!("{} {}", each.amount, each.asset_code));
    let items = reward.items.iter().map(|item| format!("{} x{}", item.template_code, item.quantity.max(1)));
    let parts: Vec<String> = assets.chain(items).collect();
    if parts.is_empty() { "nothing".to_owned() } else { parts.join(" + ") }
}

/// `active`, `disabled`, or `inactive` (enabled but outside its availability window).
fn offer_state(offer: &pb::Offer) -> &'static str {
    match (offer.active, offer.enabled) {
        (true, _) => "active",
        (false, false) => "disabled",
        (false, true) => "inactive",
    }
}

/// `offer <id> <state>  "<name>"  price P  reward R  stock S (N sold, L left)` plus the
/// limits and the availability window when set.
pub fn offer_line(offer: &pb::Offer) -> String {
    let stock = match (offer.stock, offer.remaining) {
        (Some(stock), remaining) => format!("stock {stock} ({} sold, {} left)", offer.sold, remaining.unwrap_or(0)),
        (None, _) => format!("stock unlimited ({} sold)", offer.sold),
    };
    let mut line = format!(
        "offer {} {}  {:?}  price {}  reward {}  {stock}",
        offer.id,
        offer_state(offer),
        offer.display_name,
        amounts_text(&offer.price),
        reward_text(offer.reward.as_ref())
    );
    if let Some(limit) = offer.limit.as_ref() {
        if limit.total > 0 {
            line.push_str(&format!("  limit {} per user", limit.total));
        }
        if limit.per_window > 0 {
            line.push_str(&format!("  limit {} per {}s", limit.per_window, limit.window_seconds));
        }
    }
    if offer.starts_at.is_some() {
        line.push_str(&format!("  from {}", timestamp(offer.starts_at.as_ref())));
    }
    if offer.ends_at.is_some() {
        line.push_str(&format!("  until {}", timestamp(offer.ends_at.as_ref())));
    }
    line
}

/// The lines of one exchange: `exchange <id> <status>  <what>` then, completed,
/// `paid P  granted G`; failed, `failed <REASON> [<asset>]  nothing charged`; being
/// undone, `undoing <REASON> [<asset>]`; under way, `price P  reward G`; then `user:<u>  at <time>`, and one `  item <id> <template>` line
/// per item granted (` (revoked)` when it failed).
pub fn exchange_lines(exchange: &pb::Exchange) -> Vec<String> {
    let purchase = exchange.kind() != pb::ExchangeKind::Bundle;
    let what = if purchase {
        format!("offer {} x{}", exchange.offer_id, exchange.quantity)
    } else {
        format!("bundle {}  correlation {}", exchange.business_type, exchange.correlation_id)
    };
    let status = exchange.status();
    let mut head = format!("exchange {} {}  {what}", exchange.id, enum_name(status.as_str_name(), "EXCHANGE_STATUS_"));
    let (paid, granted) = (amounts_text(&exchange.paid), granted_text(exchange));
    match status {
        pb::ExchangeStatus::Completed if purchase => head.push_str(&format!("  paid {paid}  granted {granted}")),
        pb::ExchangeStatus::Completed => head.push_str(&format!("  granted {granted}")),
        pb::ExchangeStatus::Failed => {
            head.push_str(&format!("  failed {}", failure(exchange)));
            head.push_str(if purchase { "  nothing charged" } else { "  nothing granted" });
        }
        pb::ExchangeStatus::Compensating => head.push_str(&format!("  undoing {}", failure(exchange))),
        _ if purchase => head.push_str(&format!("  price {paid}  reward {granted}")),
        _ => head.push_str(&format!("  reward {granted}")),
    }
    head.push_str(&format!("  user:{}  at {}", exchange.user_id, timestamp(exchange.created_at.as_ref())));
    let revoked = if status == pb::ExchangeStatus::Failed { " (revoked)" } else { "" };
    let items = exchange
        .granted_items
        .iter()
        .map(|item| format!("  item {} {}{revoked}", item.item_instance_id, item.template_code));
    std::iter::once(head).chain(items).collect()
}

/// `REASON` or `REASON ASSET` (the asset whose hold was refused).
fn failure(exchange: &pb::Exchange) -> String {
    match exchange.failure_asset_code.as_str() {
        "" => exchange.failure_reason.clone(),
        asset => format!("{} {asset}", exchange.failure_reason),
    }
}

/// `50 red_shard + 2 items`: the reward assets, then how many items were granted.
fn granted_text(exchange: &pb::Exchange) -> String {
    let mut parts: Vec<String> =
        exchange.granted_assets.iter().map(|each| format!("{} {}", each.amount, each.asset_code)).collect();
    match exchange.granted_items.len() {
        0 => {}
        1 => parts.push("1 item".to_owned()),
        count => parts.push(format!("{count} items")),
    }
    if parts.is_empty() { "nothing".to_owned() } else { parts.join(" + ") }
}

fn print_exchange(exchange: Option<&pb::Exchange>, replayed: bool) {
    let Some(exchange) = exchange else { return };
    let mut lines = exchange_lines(exchange);
    if replayed && let Some(head) = lines.first_mut() {
        head.push_str(" (replayed)");
    }
    lines.iter().for_each(|line| println!("{line}"));
}

/// Runs `economy offer …`.
pub async fn offer(market: &mut Market, command: OfferCommand) -> anyhow::Result<ExitCode> {
    match command {
        OfferCommand::Define(args) => {
            let (message, key) = define_request(*args);
            let request = key.request(message)?;
            let response = market.define_offer(request).await?.into_inner();
            let what = match (response.created, response.changed) {
                (true, _) => "created",
                (false, true) => "changed",
                (false, false) => "unchanged",
            };
            response.offer.iter().for_each(|offer| println!("{} ({what})", offer_line(offer)));
        }
        OfferCommand::List(args) => {
            let filter = if args.all { pb::OfferFilter::All } else { pb::OfferFilter::Active };
            let request =
                pb::ListOffersRequest { filter: filter.into(), page_size: args.page_size, page_token: args.page_token };
            let response = market.list_offers(request).await?.into_inner();
            if response.offers.is_empty() {
                println!("no offers");
            }
            response.offers.iter().for_each(|offer| println!("{}", offer_line(offer)));
            print_next_page(&response.next_page_token);
        }
        OfferCommand::Get { id } => {
            let response = market.get_offer(pb::GetOfferRequest { offer_id: id }).await?.into_inner();
            response.offer.iter().for_each(print_offer_details);
        }
        OfferCommand::Disable { id, key } => {
            let request = key.request(pb::DisableOfferRequest { offer_id: id })?;
            let response = market.disable_offer(request).await?.into_inner();
            response.offer.iter().for_each(|offer| println!("{}", offer_line(offer)));
        }
        OfferCommand::Buy { id, quantity, key } => {
            let request =
                key.request(pb::PurchaseOfferRequest { offer_id: id, quantity, idempotency_key: String::new() })?;
            let response = match market.purchase_offer(request).await {
                Ok(response) => response,
                Err(status) => return Err(show_failed(market, status).await),
            };
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            print_exchange(response.exchange.as_ref(), replayed || response.replayed);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The offer line, then its version, instants and metadata.
fn print_offer_details(offer: &pb::Offer) {
    println!("{}", offer_line(offer));
    println!(
        "  version {}  created {}  updated {}",
        offer.version,
        timestamp(offer.created_at.as_ref()),
        timestamp(offer.updated_at.as_ref())
    );
    let mut metadata: Vec<_> = offer.metadata.iter().collect();
    metadata.sort();
    metadata.iter().for_each(|(key, value)| println!("  meta {key}={value}"));
}

fn print_next_page(token: &str) {
    if !token.is_empty() {
        println!("next page: {token}");
    }
}

/// Runs `economy exchanges`: a user's exchanges, newest first.
pub async fn exchanges(market: &mut Market, args: Exchanges) -> anyhow::Result<ExitCode> {
    if let Some(exchange_id) = args.id {
        let response = market.get_exchange(pb::GetExchangeRequest { exchange_id }).await?.into_inner();
        response.exchange.iter().for_each(|exchange| print_exchange(Some(exchange), false));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(older_than_seconds) = args.stuck {
        let request = pb::ListStuckExchangesRequest { older_than_seconds };
        let response = market.list_stuck_exchanges(request).await?.into_inner();
        if response.exchanges.is_empty() {
            println!("no stuck exchanges");
        }
        response.exchanges.iter().for_each(|exchange| print_exchange(Some(exchange), false));
        return Ok(ExitCode::SUCCESS);
    }
    let request =
        pb::ListExchangesRequest { user_id: args.user, page_size: args.page_size, page_token: args.page_token };
    let response = market.list_exchanges(request).await?.into_inner();
    if response.exchanges.is_empty() {
        println!("no exchanges");
    }
    response.exchanges.iter().for_each(|exchange| print_exchange(Some(exchange), false));
    print_next_page(&response.next_page_token);
    Ok(ExitCode::SUCCESS)
}

/// The error of a refused purchase or bundle; when it names a failed exchange
/// (`exchange_id` in its `ErrorInfo`), that exchange is printed first, as stored: what
/// was refused and, for a payment, which asset.
async fn show_failed(market: &mut Market, status: tonic::Status) -> anyhow::Error {
    let info = status.get_details_error_info();
    if let Some(exchange_id) = info.and_then(|info| info.metadata.get("exchange_id").cloned())
        && let Ok(response) = market.get_exchange(pb::GetExchangeRequest { exchange_id }).await
    {
        print_exchange(response.into_inner().exchange.as_ref(), false);
    }
    status.into()
}

/// Runs `economy bundle …`.
pub async fn bundle(market: &mut Market, command: BundleCommand) -> anyhow::Result<ExitCode> {
    let BundleCommand::Grant(args) = command;
    let message = pb::GrantBundleRequest {
        idempotency_key: String::new(),
        user_id: args.user,
        reward: Some(reward(args.asset, args.item)),
        business_type: args.business_type,
        correlation_id: args.correlation,
    };
    let response = match market.grant_bundle(args.key.request(message)?).await {
        Ok(response) => response,
        Err(status) => return Err(show_failed(market, status).await),
    };
    let replayed = client::replayed(&response);
    let response = response.into_inner();
    print_exchange(response.exchange.as_ref(), replayed || response.replayed);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_rewards_take_a_template_and_an_optional_quantity() {
        assert_eq!(item_reward("sword"), Ok(ItemSpec { template: "sword".into(), quantity: 1 }));
        assert_eq!(item_reward("sword:3"), Ok(ItemSpec { template: "sword".into(), quantity: 3 }));
        for bad in ["", ":2", "sword:", "sword:0", "sword:-1", "sword:x"] {
            assert!(item_reward(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants_are_rfc3339_with_any_offset() {
        assert_eq!(instant("2026-12-24T00:00:00Z"), Ok(prost_types::Timestamp { seconds: 1_798_070_400, nanos: 0 }));
        assert_eq!(instant("2026-12-24T01:00:00+01:00").map(|at| at.seconds), Ok(1_798_070_400));
        assert!(instant("tomorrow").is_err());
    }

    fn amount(asset_code: &str, amount: i64) -> pb::AssetAmount {
        pb::AssetAmount { asset_code: asset_code.into(), amount }
    }

    #[test]
    fn offer_lines_show_price_reward_stock_and_limits() {
        let offer = pb::Offer {
            id: "starter".into(),
            display_name: "Starter pack".into(),
            price: vec![amount("POINTS", 100), amount("DIAMOND", 5)],
            reward: Some(pb::Reward {
                assets: vec![amount("red_shard", 50)],
                items: vec![pb::ItemReward { template_code: "sword".into(), quantity: 2, ..Default::default() }],
            }),
            stock: Some(10),
            sold: 3,
            remaining: Some(7),
            limit: Some(pb::PurchaseLimit { total: 2, per_window: 1, window_seconds: 3600 }),
            enabled: true,
            active: true,
            ..Default::default()
        };
        assert_eq!(
            offer_line(&offer),
            "offer starter active  \"Starter pack\"  price 100 POINTS + 5 DIAMOND  reward 50 red_shard + sword x2  \
             stock 10 (3 sold, 7 left)  limit 2 per user  limit 1 per 3600s"
        );
        let disabled = pb::Offer { stock: None, remaining: None, limit: None, enabled: false, active: false, ..offer };
        assert_eq!(
            offer_line(&disabled),
            "offer starter disabled  \"Starter pack\"  price 100 POINTS + 5 DIAMOND  reward 50 red_shard + sword x2  \
             stock unlimited (3 sold)"
        );
    }

    #[test]
    fn exchange_lines_list_what_was_paid_and_granted() {
        let exchange = pb::Exchange {
            id: "e1".into(),
            kind: pb::ExchangeKind::OfferPurchase.into(),
            user_id: 2,
            offer_id: "starter".into(),
            quantity: 2,
            paid: vec![amount("POINTS", 200)],
            granted_assets: vec![amount("red_shard", 100)],
            granted_items: vec![
                pb::GrantedItem { item_instance_id: "i1".into(), template_code: "sword".into() },
                pb::GrantedItem { item_instance_id: "i2".into(), template_code: "sword".into() },
            ],
            status: pb::ExchangeStatus::Completed.into(),
            ..Default::default()
        };
        assert_eq!(
            exchange_lines(&exchange),
            [
                "exchange e1 completed  offer starter x2  paid 200 POINTS  granted 100 red_shard + 2 items  user:2  at -",
                "  item i1 sword",
                "  item i2 sword",
            ]
        );
        let failed = pb::Exchange {
            status: pb::ExchangeStatus::Failed.into(),
            granted_assets: vec![],
            granted_items: vec![],
            failure_reason: "INSUFFICIENT_BALANCE".into(),
            failure_asset_code: "POINTS".into(),
            ..exchange
        };
        assert_eq!(
            exchange_lines(&failed),
            ["exchange e1 failed  offer starter x2  failed INSUFFICIENT_BALANCE POINTS  nothing charged  user:2  at -"]
        );
        let undoing = pb::Exchange {
            status: pb::ExchangeStatus::Compensating.into(),
            kind: pb::ExchangeKind::Bundle.into(),
            business_type: "LOTTERY_REWARD".into(),
            correlation_id: "draw-1".into(),
            failure_reason: "ACCOUNT_NOT_FOUND".into(),
            failure_asset_code: String::new(),
            granted_items: vec![pb::GrantedItem { item_instance_id: "i1".into(), template_code: "coffee".into() }],
            ..failed
        };
        assert_eq!(
            exchange_lines(&undoing),
            [
                "exchange e1 compensating  bundle LOTTERY_REWARD  correlation draw-1  undoing ACCOUNT_NOT_FOUND  user:2  at -",
                "  item i1 coffee",
            ]
        );
    }
}
