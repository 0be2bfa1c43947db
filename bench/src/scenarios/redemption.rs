//! `redemption`: one operation is a redemption code's whole life through the gateway —
//! `CreateOrder` by the item's owner (locks the item, returns the code), then
//! `FulfillOrder` by merchant staff (consumes the item through the outbox).
//!
//! Every operation needs a fresh redeemable item, so setup grants each client's owner a
//! pool sized for `POOL_RATE` operations per second over the whole run; a client whose
//! pool runs out stops (the report says so, and the window ends with the last client).

use std::collections::HashMap;

use economy_kit::identity::roles;
use economy_proto::redemption::v1 as pb;

use super::BenchOptions;
use super::setup;
use crate::clients::{self, Auth, RedemptionClient, Route, new_key};
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::Stack;

/// Create + fulfil pairs per second the pre-granted pool is sized for (well above what
/// this machine sustains; raise it when a faster machine exhausts the pool).
const POOL_RATE: f64 = 800.0;
/// The template granted.
const TEMPLATE: &str = "bench_voucher";
/// Merchant staff ids start here (above every owner of the run).
const STAFF_OFFSET: i64 = 50_000;

/// One client: an owner with a pool of items and a member of staff.
struct Redeemer {
    owner: RedemptionClient,
    staff: RedemptionClient,
    items: Vec<String>,
}

impl Worker for Redeemer {
    async fn call(&mut self) -> Outcome {
        let Some(item) = self.items.pop() else { return Outcome::Exhausted };
        let create = pb::CreateOrderRequest { item_instance_id: item, ..Default::default() };
        let created = match Route::Gateway.write(create, &new_key()) {
            Ok(request) => self.owner.create_order(request).await,
            Err(error) => return Outcome::unexpected("HARNESS", format!("{error:#}")),
        };
        let code = match created {
            Ok(response) => response.into_inner().code,
            Err(status) => return Outcome::status(&status),
        };
        let fulfil = pb::FulfillOrderRequest { code, ..Default::default() };
        let fulfilled = match Route::Gateway.write(fulfil, &new_key()) {
            Ok(request) => self.staff.fulfill_order(request).await,
            Err(error) => return Outcome::unexpected("HARNESS", format!("{error:#}")),
        };
        match fulfilled {
            Ok(_) => Outcome::Ok,
            Err(status) => Outcome::status(&status),
        }
    }
}

/// Items each client is granted for `options`.
fn pool_per_client(options: &BenchOptions) -> usize {
    let seconds = (options.load.warmup + options.load.duration).as_secs_f64();
    let clients = options.load.concurrency.max(1) as f64;
    (POOL_RATE * seconds / clients).ceil() as usize + 1
}

/// Grants every client's owner a pool of redeemable items, then drives create + fulfil.
pub(super) async fn run(stack: &Stack, options: &BenchOptions, notes: &mut Vec<String>) -> anyhow::Result<Measurement> {
    let concurrency = options.load.concurrency.max(1);
    let base = setup::user_base(stack);
    let owners: Vec<i64> = (0..concurrency).map(|index| base + index as i64).collect();
    let pool = pool_per_client(options);
    let admin = setup::items_admin(stack).await?;
    admin.define_template(TEMPLATE, true).await?;
    let grants = owners.iter().flat_map(|owner| std::iter::repeat_n(*owner, pool)).collect();
    let mut pools: HashMap<i64, Vec<String>> = HashMap::new();
    for (owner, item) in admin.grant_items(TEMPLATE, grants).await? {
        pools.entry(owner).or_default().push(item);
    }
    notes.push(format!("{pool} items pre-granted per client ({} in all)", pool * concurrency));
    let channels = clients::connect_many(&stack.gateway_url, options.load.connections).await?;
    let mut workers = Vec::with_capacity(concurrency);
    for (index, owner) in owners.into_iter().enumerate() {
        let channel = channels[index % channels.len()].clone();
        let staff = base + STAFF_OFFSET + index as i64;
        workers.push(Redeemer {
            owner: clients::redemption(channel.clone(), Auth::Bearer(stack.bearer(owner, roles::USER)?)),
            staff: clients::redemption(channel, Auth::Bearer(stack.bearer(staff, roles::MERCHANT_STAFF)?)),
            items: pools.remove(&owner).unwrap_or_default(),
        });
    }
    driver::drive(workers, &options.load).await
}
