//! The market's flows (docs/market.md) across its store, the ledger and the
//! items service. Every downstream call carries a key derived from the listing id or the
//! trade's business event, and every local change is a compare-and-set, so a retry or the
//! recovery worker can resume any flow at any point:
//!
//! - listing: stored `creating` -> escrow taken (`<listing>:escrow`: ledger hold or item
//!   lock) -> `on_sale`. A refusal fails the listing; an interruption is resumed.
//! - purchase (`purchase`): one buyer wins `on_sale -> selling`, then the trade's saga.
//! - cancel / expiry: `on_sale -> cancelled | expired` with the escrow return
//!   (`<listing>:return`) owed in the outbox.
//! - offers (`offers`) and exchanges (`exchange`): the shop's definitions, and the saga of
//!   an offer purchase or a reward bundle.

mod compensation;
mod exchange;
mod listing;
mod offers;
mod purchase;

use std::sync::Arc;

use economy_kit::identity::Caller;
use economy_kit::time::Clock;
use economy_proto::ledger::v1::Balance as LedgerBalance;

use crate::clients::items::Items;
use crate::clients::ledger::Ledger;
use crate::domain::{Listing, MarketError, Trade};
use crate::store::{Browse, MarketStore};

pub use compensation::Redriven;
pub use exchange::NewBundle;
pub use listing::NewListing;

/// Pricing rules.
#[derive(Debug, Clone)]
pub struct MarketRules {
    /// Platform fee, basis points of the price.
    pub fee_bps: u32,
    /// Assets a price may be set in.
    pub price_assets: Vec<String>,
    /// Sale period of a listing without its own expiry, ms (0: none).
    pub default_listing_ttl_ms: i64,
    /// The system account offer payments are settled to.
    pub revenue_account: String,
    /// How long a runner's claim on an exchange lasts, ms: longer than one downstream
    /// call may take (the request timeout), renewed while the saga runs.
    pub exchange_lease_ms: i64,
}

/// The market's state.
#[derive(Debug)]
pub struct Market {
    /// Listings, trades, outbox.
    pub store: MarketStore,
    /// The ledger, as the market.
    pub ledger: Ledger,
    /// The items service, as the market.
    pub items: Items,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Fee and price assets.
    pub rules: MarketRules,
}

fn require(allowed: bool, what: &str) -> Result<(), MarketError> {
    allowed.then_some(()).ok_or_else(|| MarketError::PermissionDenied(format!("the caller may not {what}")))
}

impl Market {
    fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    async fn listing(&self, listing_id: &str) -> Result<Listing, MarketError> {
        self.store.listing(listing_id).await?.ok_or_else(|| MarketError::ListingNotFound(listing_id.to_owned()))
    }

    /// GetListing: anyone.
    pub async fn get(&self, listing_id: &str) -> Result<Listing, MarketError> {
        self.listing(listing_id).await
    }

    /// ListListings: one page of listings on sale (anyone).
    pub async fn browse(&self, browse: &Browse<'_>) -> Result<Vec<Listing>, MarketError> {
        Ok(self.store.browse(browse).await?)
    }

    /// ListTrades: `user_id`'s purchases and sales below trade id `before` (`''`: from the
    /// newest), newest first; `caller` must be that user, an admin or a service.
    pub async fn trades(
        &self,
        caller: &Caller,
        user_id: i64,
        before: &str,
        limit: i64,
    ) -> Result<Vec<Trade>, MarketError> {
        let user = listed_user(caller, user_id, "list another user's trades")?;
        Ok(self.store.trades_of(user, before, limit).await?)
    }
}

impl Market {
    /// The resulting balances of `user_id`'s account recorded by the last entry of
    /// `transactions` (docs/ledger.md, "Resulting balances"): what a purchase's answer
    /// passes through. Empty when there is no entry, or when the ledger cannot be read
    /// now (the answer goes out without them; logged).
    pub async fn balances_after(&self, transactions: &[String], user_id: i64) -> Vec<LedgerBalance> {
        let Some(last) = transactions.last() else { return Vec::new() };
        match self.ledger.balances_after(last, user_id).await {
            Ok(balances) => balances,
            Err(error) => {
                tracing::warn!(transaction_id = %last, reason = error.reason(), "resulting balances not read");
                Vec::new()
            }
        }
    }
}

/// The user whose history `caller` lists: `user_id`, or the caller for 0; `denied` says
/// what a caller may not do for another user.
fn listed_user(caller: &Caller, user_id: i64, denied: &str) -> Result<i64, MarketError> {
    let user = if user_id == 0 { caller.user_id() } else { Some(user_id) };
    let user = user.ok_or_else(|| MarketError::PermissionDenied("services must name the user".into()))?;
    require(caller.may_act_for(user), denied)?;
    Ok(user)
}
