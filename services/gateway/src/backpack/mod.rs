//! `economy.gateway.v1.BackpackService` (issue: backpack view; reference notes
//! backpack-dual-track-migration-plan.md Phase 2): a user's non-zero ledger balances and
//! their item instances that are not finished, fetched in parallel. Stackable assets only
//! ever come from the ledger and instances only from items, so neither list can contain
//! the other kind. A failing upstream fails the whole call, never half a backpack.
//! `WatchBackpack` follows the same two sources as they change ([`watch`]).

mod cursor;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use economy_kit::error::Violations;
use economy_kit::identity::{Caller, roles};
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use pb::backpack_service_server::BackpackService;
use tonic::{Request, Response, Status};

use crate::error::GatewayError;
use crate::proxy::Gateway;
use crate::streams::Guarded;
use crate::upstream::{Upstreams, upstream_error};
use cursor::BackpackCursor;

/// The service, sharing the proxy's state (auth, limits, channels).
#[derive(Clone)]
pub struct Backpack {
    gateway: Arc<Gateway>,
    /// Heartbeat period of `WatchBackpack` (`gateway.streams.heartbeat_secs`).
    heartbeat: Duration,
}

impl Backpack {
    /// Serves backpacks through `gateway`; idle `WatchBackpack` streams get a heartbeat
    /// every `heartbeat`.
    pub fn new(gateway: Arc<Gateway>, heartbeat: Duration) -> Self {
        Self { gateway, heartbeat: heartbeat.max(Duration::from_secs(1)) }
    }
}

/// The user whose backpack `caller` may read: themself (0), or anyone for an admin.
fn owner(caller: &Caller, user_id: i64) -> Result<i64, GatewayError> {
    let own = caller.user_id().unwrap_or_default();
    match user_id {
        0 => Ok(own),
        id if id == own || caller.is_admin() => Ok(id),
        _ => Err(GatewayError::PermissionDenied("only admins read another user's backpack")),
    }
}

fn assets(balances: Vec<ledger::Balance>, catalog: Vec<ledger::Asset>) -> Vec<pb::BackpackAsset> {
    let catalog: HashMap<String, ledger::Asset> =
        catalog.into_iter().map(|asset| (asset.code.clone(), asset)).collect();
    balances
        .into_iter()
        .filter(|balance| balance.available != 0 || balance.frozen != 0)
        .map(|balance| {
            let entry = catalog.get(&balance.asset_code);
            pb::BackpackAsset {
                display_name: entry.map(|asset| asset.display_name.clone()).unwrap_or_default(),
                kind: entry.map_or(0, |asset| asset.kind),
                asset_code: balance.asset_code,
                available: balance.available,
                frozen: balance.frozen,
                total: balance.total,
            }
        })
        .collect()
}

#[tonic::async_trait]
impl BackpackService for Backpack {
    async fn get_backpack(
        &self,
        request: Request<pb::GetBackpackRequest>,
    ) -> Result<Response<pb::GetBackpackResponse>, Status> {
        let (caller, _permit) = self.gateway.admit(request.metadata(), roles::USER).await?;
        let message = request.into_inner();
        let mut violations = Violations::default();
        violations.check(message.user_id >= 0, "user_id", "a positive user id, or 0 for the caller");
        violations.check((0..=500).contains(&message.page_size), "page_size", "0..=500");
        violations.finish(crate::DOMAIN)?;
        let user_id = owner(&caller, message.user_id)?;
        let Upstreams { mut ledger, items: mut item_client, .. } = Upstreams::new(&self.gateway, &caller)?;
        let mut catalog_client = ledger.clone();
        let account = ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(user_id)) };
        let list = items::ListItemsRequest {
            owner_user_id: user_id,
            statuses: vec![items::ItemStatus::Available.into(), items::ItemStatus::Locked.into()],
            page_size: message.page_size,
            page_token: message.page_token,
            grouped: message.grouped,
        };
        let (balances, catalog, listed) = tokio::join!(
            ledger.list_balances(ledger::ListBalancesRequest { account: Some(account), as_of: None }),
            catalog_client.list_assets(ledger::ListAssetsRequest {}),
            item_client.list_items(list),
        );
        let balances = balances.map_err(upstream_error("ledger"))?.into_inner().balances;
        let catalog = catalog.map_err(upstream_error("ledger"))?.into_inner().assets;
        let listed = listed.map_err(upstream_error("items"))?.into_inner();
        Ok(Response::new(pb::GetBackpackResponse {
            user_id,
            assets: assets(balances, catalog),
            items: listed.items,
            groups: listed.groups,
            next_page_token: listed.next_page_token,
        }))
    }

    type WatchBackpackStream = Guarded<watch::BackpackStream>;

    async fn watch_backpack(
        &self,
        request: Request<pb::WatchBackpackRequest>,
    ) -> Result<Response<Self::WatchBackpackStream>, Status> {
        let (caller, _opening) = self.gateway.admit(request.metadata(), roles::USER).await?;
        let (user_id, start) = watch_request(&caller, request.get_ref())?;
        let permit = self.gateway.streams.acquire(caller.user_id().unwrap_or_default())?;
        let upstreams = Upstreams::new(&self.gateway, &caller)?;
        let stream = watch::open(upstreams, user_id, start, self.heartbeat, permit.closing()).await?;
        Ok(Response::new(permit.guard(stream)))
    }
}

/// `WatchBackpack`'s request: the user (as `GetBackpack`) and where to start.
fn watch_request(caller: &Caller, message: &pb::WatchBackpackRequest) -> Result<(i64, Option<BackpackCursor>), Status> {
    let mut violations = Violations::default();
    violations.check(message.user_id >= 0, "user_id", "a positive user id, or 0 for the caller");
    let start = match message.after_cursor.as_str() {
        "" => None,
        text => match BackpackCursor::parse(text) {
            Ok(cursor) => Some(cursor),
            Err(description) => {
                violations.add("after_cursor", description);
                None
            }
        },
    };
    violations.finish(crate::DOMAIN)?;
    Ok((owner(caller, message.user_id)?, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_read_their_own_backpack_and_admins_any() {
        let user = Caller::user(7, roles::USER);
        assert_eq!(owner(&user, 0).ok(), Some(7));
        assert_eq!(owner(&user, 7).ok(), Some(7));
        assert!(owner(&user, 8).is_err());
        assert_eq!(owner(&Caller::user(1, roles::ADMIN), 8).ok(), Some(8));
    }

    #[test]
    fn assets_carry_their_catalog_entry_and_skip_zero_balances() {
        let balance = |code: &str, available, frozen| ledger::Balance {
            account: None,
            asset_code: code.into(),
            available,
            frozen,
            total: available + frozen,
        };
        let catalog = vec![ledger::Asset {
            code: "DIAMOND".into(),
            display_name: "Diamond".into(),
            kind: ledger::AssetKind::Currency.into(),
            ..Default::default()
        }];
        let listed = assets(vec![balance("DIAMOND", 5, 2), balance("red_shard", 0, 0)], catalog);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].display_name.as_str(), listed[0].total), ("Diamond", 7));
    }
}
