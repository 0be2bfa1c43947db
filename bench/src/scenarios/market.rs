//! `market`: one operation is the purchase of an asset listing through the gateway
//! (issue 5's asset path: ONE ledger transaction with the buyer's payment, the seller's
//! and the platform's credits and the settlement of the seller's hold).
//!
//! Every purchase needs a listing on sale, so setup (untimed) funds a seller and a buyer
//! per client and has each seller list a pool of 1-unit listings sized for `POOL_RATE`
//! purchases per second over the whole run; client `i` buys seller `i`'s listings.

use economy_kit::identity::roles;
use economy_proto::market::v1 as pb;

use super::BenchOptions;
use super::setup::{self, SETUP_LANES};
use crate::clients::{self, Auth, MarketClient, Route, new_key};
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::Stack;

/// Purchases per second the listing pool is sized for.
const POOL_RATE: f64 = 1_600.0;
/// The asset listed (1 unit per listing).
const ASSET: &str = "bench_shard";
/// The price asset.
const PRICE_ASSET: &str = "DIAMOND";
/// Price of every listing (fee 5 at the default 500 bps).
const PRICE: i64 = 100;
/// Buyers' ids are the sellers' plus this.
const BUYER_OFFSET: i64 = 200_000;

/// One client: a buyer with the listings it will buy.
struct Buyer {
    client: MarketClient,
    listings: Vec<String>,
}

impl Worker for Buyer {
    async fn call(&mut self) -> Outcome {
        let Some(listing_id) = self.listings.pop() else { return Outcome::Exhausted };
        let request = pb::PurchaseListingRequest { listing_id, ..Default::default() };
        let request = match Route::Gateway.write(request, &new_key()) {
            Ok(request) => request,
            Err(error) => return Outcome::unexpected("HARNESS", format!("{error:#}")),
        };
        match self.client.purchase_listing(request).await {
            Ok(_) => Outcome::Ok,
            Err(status) => Outcome::status(&status),
        }
    }
}

/// Funds sellers and buyers, lists the pools, then drives the purchases.
pub(super) async fn run(stack: &Stack, options: &BenchOptions, notes: &mut Vec<String>) -> anyhow::Result<Measurement> {
    let concurrency = options.load.concurrency.max(1);
    let base = setup::user_base(stack);
    let sellers: Vec<i64> = (0..concurrency).map(|index| base + index as i64).collect();
    let seconds = (options.load.warmup + options.load.duration).as_secs_f64();
    let pool = (POOL_RATE * seconds / concurrency as f64).ceil() as usize + 1;
    let mut admin = setup::ledger_admin(stack).await?;
    for asset in [PRICE_ASSET, ASSET] {
        setup::define_asset(&mut admin, asset).await?;
    }
    let pool_units = i64::try_from(pool)?;
    setup::fund(&admin, ASSET, pool_units, sellers.clone()).await?;
    let buyers: Vec<i64> = sellers.iter().map(|seller| seller + BUYER_OFFSET).collect();
    setup::fund(&admin, PRICE_ASSET, pool_units * PRICE, buyers.clone()).await?;

    let channels = clients::connect_many(&stack.gateway_url, options.load.connections).await?;
    let mut listers = Vec::with_capacity(concurrency);
    for (index, seller) in sellers.iter().enumerate() {
        let auth = Auth::Bearer(stack.bearer(*seller, roles::USER)?);
        listers.push(clients::market(channels[index % channels.len()].clone(), auth));
    }
    let orders: Vec<(usize, MarketClient)> = (0..pool).flat_map(|_| listers.iter().cloned().enumerate()).collect();
    let listed = setup::in_parallel(orders, SETUP_LANES, |(index, mut client)| async move {
        let request = pb::CreateListingRequest {
            offer: Some(pb::create_listing_request::Offer::Asset(pb::AssetOffer {
                asset_code: ASSET.into(),
                amount: 1,
            })),
            price: Some(pb::Price { asset_code: PRICE_ASSET.into(), amount: PRICE }),
            ..Default::default()
        };
        let response = client.create_listing(Route::Gateway.write(request, &new_key())?).await?;
        let listing = response.into_inner().listing.map(|listing| listing.id).unwrap_or_default();
        anyhow::Ok((index, listing))
    })
    .await?;
    let mut pools: Vec<Vec<String>> = vec![Vec::new(); concurrency];
    for (index, listing) in listed {
        if let Some(pool) = pools.get_mut(index) {
            pool.push(listing);
        }
    }
    notes.push(format!("{pool} listings per client ({} in all), price {PRICE} {PRICE_ASSET}", pool * concurrency));
    let mut workers = Vec::with_capacity(concurrency);
    for (index, (buyer, listings)) in buyers.into_iter().zip(pools).enumerate() {
        let auth = Auth::Bearer(stack.bearer(buyer, roles::USER)?);
        workers.push(Buyer { client: clients::market(channels[index % channels.len()].clone(), auth), listings });
    }
    driver::drive(workers, &options.load).await
}
