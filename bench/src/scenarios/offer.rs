//! `offer`: one operation is the purchase of one unit of a shop offer through the gateway
//! (docs/market.md, "Exchanges"): the market reserves it, holds the 1-asset price in the
//! ledger, grants the 1-item reward through Items, then posts ONE ledger entry settling
//! the hold to `SYSTEM_SHOP_REVENUE`.
//!
//! The offer is unlimited, so every client buys the same one; setup (untimed) defines the
//! price asset, the reward's template and the offer, and funds one buyer per client for
//! `BUDGET_RATE` purchases per second over the whole run. A buyer whose budget runs out
//! stops (the report says so).

use economy_kit::identity::roles;
use economy_proto::market::v1 as pb;

use super::BenchOptions;
use super::setup;
use crate::clients::{self, Auth, MarketClient, Route, new_key};
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::Stack;

/// Purchases per second the buyers' funds are sized for (well above what this machine
/// sustains; raise it when a faster machine exhausts the budgets).
const BUDGET_RATE: f64 = 1_000.0;
/// The price asset.
const PRICE_ASSET: &str = "bench_points";
/// Price of one unit.
const PRICE: i64 = 10;
/// The reward's item template (one instance per unit).
const TEMPLATE: &str = "bench_chest";

/// One client: a buyer with the purchases its funds allow.
struct Buyer {
    client: MarketClient,
    offer_id: String,
    budget: usize,
}

impl Worker for Buyer {
    async fn call(&mut self) -> Outcome {
        let Some(left) = self.budget.checked_sub(1) else { return Outcome::Exhausted };
        self.budget = left;
        let request = pb::PurchaseOfferRequest { offer_id: self.offer_id.clone(), quantity: 1, ..Default::default() };
        let request = match Route::Gateway.write(request, &new_key()) {
            Ok(request) => request,
            Err(error) => return Outcome::unexpected("HARNESS", format!("{error:#}")),
        };
        match self.client.purchase_offer(request).await {
            Ok(_) => Outcome::Ok,
            Err(status) => Outcome::status(&status),
        }
    }
}

/// Purchases each client can pay for with `options`.
fn budget_per_client(options: &BenchOptions) -> usize {
    let seconds = (options.load.warmup + options.load.duration).as_secs_f64();
    (BUDGET_RATE * seconds / options.load.concurrency.max(1) as f64).ceil() as usize + 1
}

/// Defines the unlimited offer `offer_id`: `PRICE` of `PRICE_ASSET` for one `TEMPLATE`.
async fn define_offer(stack: &Stack, offer_id: &str) -> anyhow::Result<()> {
    let channel = clients::connect(&stack.gateway_url).await?;
    let mut admin = clients::market(channel, Auth::Bearer(stack.bearer(setup::SETUP_ADMIN, roles::ADMIN)?));
    let reward = pb::Reward {
        assets: Vec::new(),
        items: vec![pb::ItemReward { template_code: TEMPLATE.into(), quantity: 1, ..Default::default() }],
    };
    let request = pb::DefineOfferRequest {
        offer_id: offer_id.to_owned(),
        display_name: "Benchmark chest".into(),
        price: vec![pb::AssetAmount { asset_code: PRICE_ASSET.into(), amount: PRICE }],
        reward: Some(reward),
        ..Default::default()
    };
    admin.define_offer(Route::Gateway.unkeyed(request, &new_key())?).await?;
    Ok(())
}

/// Defines the catalog and the offer, funds the buyers, then drives the purchases.
pub(super) async fn run(stack: &Stack, options: &BenchOptions, notes: &mut Vec<String>) -> anyhow::Result<Measurement> {
    let concurrency = options.load.concurrency.max(1);
    let base = setup::user_base(stack);
    let buyers: Vec<i64> = (0..concurrency).map(|index| base + index as i64).collect();
    let budget = budget_per_client(options);
    let mut ledger_admin = setup::ledger_admin(stack).await?;
    setup::define_asset(&mut ledger_admin, PRICE_ASSET).await?;
    setup::items_admin(stack).await?.define_template(TEMPLATE, false).await?;
    let offer_id =
        if stack.is_in_process() { "bench-chest".to_owned() } else { format!("bench-chest-{}", setup::run_suffix()) };
    define_offer(stack, &offer_id).await?;
    setup::fund(&ledger_admin, PRICE_ASSET, i64::try_from(budget)? * PRICE, buyers.clone()).await?;
    notes.push(format!(
        "offer {offer_id}: {PRICE} {PRICE_ASSET} for 1 {TEMPLATE}, unlimited stock; {budget} purchases funded per client"
    ));
    let channels = clients::connect_many(&stack.gateway_url, options.load.connections).await?;
    let mut workers = Vec::with_capacity(concurrency);
    for (index, buyer) in buyers.into_iter().enumerate() {
        let auth = Auth::Bearer(stack.bearer(buyer, roles::USER)?);
        let client = clients::market(channels[index % channels.len()].clone(), auth);
        workers.push(Buyer { client, offer_id: offer_id.clone(), budget });
    }
    driver::drive(workers, &options.load).await
}
