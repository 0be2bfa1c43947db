//! Untimed preparation shared by the scenarios: who the simulated users are, setup
//! clients, catalog entries and item grants. In-process, items are granted straight to
//! the items service (faster, and not what is measured); against a running stack,
//! through the gateway.

use std::future::Future;

use economy_kit::identity::{Caller, roles};
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use tokio::task::JoinSet;

use crate::clients::{self, Auth, ItemsClient, LedgerClient, Route, new_key};
use crate::stack::Stack;

/// Concurrent setup calls (grants, fundings).
pub(super) const SETUP_LANES: usize = 32;
/// The admin who prepares the catalog.
pub(super) const SETUP_ADMIN: i64 = 1;
/// Client `i` of a ledger load acts as admin `ADMIN_BASE + i`, so per-user limits and
/// idempotency records are per client, as with real callers.
pub(super) const ADMIN_BASE: i64 = 1_000;

/// The first user id of this run's accounts and owners: fixed in a fresh in-process
/// stack, random against a running stack so runs do not share users.
pub(super) fn user_base(stack: &Stack) -> i64 {
    if stack.is_in_process() { 1_000_000 } else { 1_000_000 + i64::from(rand::random::<u32>()) * 100_000 }
}

/// A short random suffix for names that must be new on a running stack.
pub(super) fn run_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Runs `work` on every input, `lanes` at a time; results in no particular order.
pub(super) async fn in_parallel<T, R, F, Fut>(inputs: Vec<T>, lanes: usize, work: F) -> anyhow::Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<R>> + Send + 'static,
{
    let lanes = lanes.max(1);
    let mut queues: Vec<Vec<T>> = (0..lanes).map(|_| Vec::new()).collect();
    for (index, input) in inputs.into_iter().enumerate() {
        if let Some(queue) = queues.get_mut(index % lanes) {
            queue.push(input);
        }
    }
    let mut tasks = JoinSet::new();
    for queue in queues.into_iter().filter(|queue| !queue.is_empty()) {
        let work = work.clone();
        tasks.spawn(async move {
            let mut done = Vec::with_capacity(queue.len());
            for input in queue {
                done.push(work(input).await?);
            }
            anyhow::Ok(done)
        });
    }
    let mut results = Vec::new();
    while let Some(lane) = tasks.join_next().await {
        results.extend(lane??);
    }
    Ok(results)
}

/// A ledger client for the setup admin, through the gateway.
pub(super) async fn ledger_admin(stack: &Stack) -> anyhow::Result<LedgerClient> {
    let channel = clients::connect(&stack.gateway_url).await?;
    Ok(clients::ledger(channel, Auth::Bearer(stack.bearer(SETUP_ADMIN, roles::ADMIN)?)))
}

/// Defines currency `code` through `client`.
pub(super) async fn define_asset(client: &mut LedgerClient, code: &str) -> anyhow::Result<()> {
    let asset = ledger::Asset {
        code: code.to_owned(),
        display_name: format!("Benchmark {code}"),
        kind: ledger::AssetKind::Currency.into(),
        ..Default::default()
    };
    let request = Route::Gateway.unkeyed(ledger::DefineAssetRequest { asset: Some(asset) }, &new_key())?;
    client.define_asset(request).await?;
    Ok(())
}

/// Credits `amount` of `asset` to every user of `users`.
pub(super) async fn fund(admin: &LedgerClient, asset: &str, amount: i64, users: Vec<i64>) -> anyhow::Result<()> {
    let (admin, asset) = (admin.clone(), asset.to_owned());
    in_parallel(users, SETUP_LANES, move |user_id| {
        let (mut admin, asset) = (admin.clone(), asset.clone());
        async move {
            let request = ledger::AdjustBalanceRequest {
                user_id,
                asset_code: asset,
                direction: ledger::AdjustDirection::Credit.into(),
                amount,
                reason: "benchmark funding".into(),
                ..Default::default()
            };
            admin.adjust_balance(Route::Gateway.write(request, &new_key())?).await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Setup's items clients, one per lane, each for its own admin (`SETUP_ADMIN + lane`),
/// so a running stack's per-user rate limit allows `SETUP_LANES` times its rate.
#[derive(Clone)]
pub(super) struct ItemsAdmin {
    clients: Vec<ItemsClient>,
    route: Route,
}

/// Items clients for setup: straight to the items service when the stack runs here,
/// through the gateway otherwise.
pub(super) async fn items_admin(stack: &Stack) -> anyhow::Result<ItemsAdmin> {
    let admins = (0..SETUP_LANES as i64).map(|lane| SETUP_ADMIN + lane);
    match (&stack.items_url, &stack.identity) {
        (Some(url), Some(identity)) => {
            let channel = clients::connect(url).await?;
            let clients = admins
                .map(|admin| {
                    let signer = identity.signer(Caller::user(admin, roles::ADMIN));
                    clients::items(channel.clone(), Auth::Internal(signer))
                })
                .collect();
            Ok(ItemsAdmin { clients, route: Route::Direct })
        }
        _ => {
            let channel = clients::connect(&stack.gateway_url).await?;
            let clients = admins
                .map(|admin| Ok(clients::items(channel.clone(), Auth::Bearer(stack.bearer(admin, roles::ADMIN)?))))
                .collect::<anyhow::Result<_>>()?;
            Ok(ItemsAdmin { clients, route: Route::Gateway })
        }
    }
}

impl ItemsAdmin {
    fn lane(&self, index: usize) -> anyhow::Result<ItemsClient> {
        let client = self.clients.get(index % self.clients.len().max(1));
        client.cloned().ok_or_else(|| anyhow::anyhow!("no setup client"))
    }

    /// Defines (or redefines) a never-expiring product template `code`.
    pub(super) async fn define_template(&self, code: &str, redeemable: bool) -> anyhow::Result<()> {
        let template = items::ItemTemplate {
            code: code.to_owned(),
            display_name: format!("Benchmark {code}"),
            kind: items::ItemKind::Product.into(),
            redeemable,
            ..Default::default()
        };
        let request = self.route.unkeyed(items::DefineTemplateRequest { template: Some(template) }, &new_key())?;
        self.lane(0)?.define_template(request).await?;
        Ok(())
    }

    /// Grants one `template` item to each owner in `owners` (repeats allowed),
    /// `SETUP_LANES` at a time; returns `(owner, item id)` pairs in no particular order.
    pub(super) async fn grant_items(&self, template: &str, owners: Vec<i64>) -> anyhow::Result<Vec<(i64, String)>> {
        let (admin, template) = (self.clone(), template.to_owned());
        // `in_parallel` runs input `i` on lane `i % SETUP_LANES`: one admin per lane.
        let inputs: Vec<(usize, i64)> = owners.into_iter().enumerate().collect();
        in_parallel(inputs, SETUP_LANES, move |(index, owner)| {
            let (admin, template) = (admin.clone(), template.clone());
            async move {
                let mut client = admin.lane(index)?;
                let grant = items::GrantItemRequest {
                    owner_user_id: owner,
                    template_code: template,
                    business_type: "BENCH_GRANT".into(),
                    ..Default::default()
                };
                let item = client.grant_item(admin.route.write(grant, &new_key())?).await?.into_inner().item;
                let item = item.ok_or_else(|| anyhow::anyhow!("GrantItem returned no item"))?;
                Ok((owner, item.id))
            }
        })
        .await
    }
}
