//! `backpack-1k` / `backpack-10k`: a user reads their own backpack through the gateway —
//! `economy.gateway.v1.BackpackService.GetBackpack` with the default page size (50): the
//! gateway fetches the user's ledger balances, the asset catalog and the first page of
//! their available or locked items (`ItemService.ListItems`) in parallel.
//!
//! Setup grants the owner 1,000 or 10,000 items of one template and one currency balance,
//! then (PostgreSQL, in-process) analyzes the items database as autovacuum would.

use economy_kit::identity::roles;
use economy_proto::gateway::v1 as pb;
use economy_proto::ledger::v1 as ledger;

use super::BenchOptions;
use super::setup;
use crate::clients::{self, Auth, BackpackClient, Route, new_key};
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::Stack;

/// Items per page when the request leaves `page_size` 0.
const DEFAULT_PAGE: usize = 50;
/// The template granted.
const TEMPLATE: &str = "bench_card";

/// One client reading the owner's first page.
struct Reader {
    client: BackpackClient,
    /// Items the first page must hold.
    expected: usize,
    /// Whether a next page must exist.
    more: bool,
}

impl Worker for Reader {
    async fn call(&mut self) -> Outcome {
        // user 0: the caller.
        match self.client.get_backpack(pb::GetBackpackRequest::default()).await {
            Ok(response) => {
                let page = response.into_inner();
                let complete = page.items.len() == self.expected
                    && page.next_page_token.is_empty() != self.more
                    && page.assets.len() == 1;
                if !complete {
                    let detail = format!(
                        "{} assets, {} items, next page token {:?}",
                        page.assets.len(),
                        page.items.len(),
                        page.next_page_token
                    );
                    return Outcome::unexpected("WRONG_PAGE", detail);
                }
                Outcome::Ok
            }
            Err(status) => Outcome::status(&status),
        }
    }
}

/// Grants `items` items (and one balance) to one owner, then drives first-page reads of
/// that owner's backpack.
pub(super) async fn run(stack: &Stack, options: &BenchOptions, items: usize) -> anyhow::Result<Measurement> {
    let owner = setup::user_base(stack) + 1;
    let asset = format!("BENCH_{}", setup::run_suffix());
    let mut ledger_admin = setup::ledger_admin(stack).await?;
    setup::define_asset(&mut ledger_admin, &asset).await?;
    let credit = ledger::AdjustBalanceRequest {
        user_id: owner,
        asset_code: asset,
        direction: ledger::AdjustDirection::Credit.into(),
        amount: 100,
        reason: "benchmark backpack".into(),
        ..Default::default()
    };
    ledger_admin.adjust_balance(Route::Gateway.write(credit, &new_key())?).await?;
    let admin = setup::items_admin(stack).await?;
    admin.define_template(TEMPLATE, false).await?;
    let granted = admin.grant_items(TEMPLATE, vec![owner; items]).await?;
    anyhow::ensure!(granted.len() == items, "granted {} of {items} items", granted.len());
    // Right after a bulk grant PostgreSQL has no statistics for the new rows and plans the
    // page as a scan + sort of every item of the owner; autovacuum would analyze within a
    // minute, so the harness does it now to measure the steady state.
    stack.analyze("items").await?;
    let channels = clients::connect_many(&stack.gateway_url, options.load.connections).await?;
    let bearer = stack.bearer(owner, roles::USER)?;
    let workers = (0..options.load.concurrency.max(1))
        .map(|index| Reader {
            client: clients::backpack(channels[index % channels.len()].clone(), Auth::Bearer(bearer.clone())),
            expected: items.min(DEFAULT_PAGE),
            more: items > DEFAULT_PAGE,
        })
        .collect();
    driver::drive(workers, &options.load).await
}
