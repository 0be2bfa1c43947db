//! Typed clients of the upstream services for the gateway's own RPCs, over the proxy's
//! channels, signed with the caller's identity (backpack) or the gateway's own
//! (consistency checks). Failures of an upstream become `UNAVAILABLE` /
//! `UPSTREAM_UNAVAILABLE` naming it, except business answers which pass through.

use economy_kit::error::{Upstream, classify};
use economy_kit::identity::{Caller, Signer};
use economy_proto::{items, ledger, market, redemption};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::GatewayError;
use crate::proxy::Gateway;

type Signed = InterceptedService<Channel, Signer>;

/// Ledger client.
pub type Ledger = ledger::v1::ledger_service_client::LedgerServiceClient<Signed>;
/// Items client.
pub type Items = items::v1::item_service_client::ItemServiceClient<Signed>;
/// Market client.
pub type Market = market::v1::market_service_client::MarketServiceClient<Signed>;
/// Redemption client.
pub type Redemption = redemption::v1::redemption_service_client::RedemptionServiceClient<Signed>;

/// The clients of every upstream, acting as one caller.
pub struct Upstreams {
    /// The ledger.
    pub ledger: Ledger,
    /// Items.
    pub items: Items,
    /// The market.
    pub market: Market,
    /// Redemption.
    pub redemption: Redemption,
}

impl Upstreams {
    /// Clients acting as `caller`; `UNAVAILABLE` when an upstream is not configured.
    pub fn new(gateway: &Gateway, caller: &Caller) -> Result<Self, Status> {
        let channel = |name: &str| {
            gateway.upstreams.get(name).cloned().ok_or_else(|| GatewayError::unavailable(name, "not configured"))
        };
        let signer = || gateway.identity.signer(caller.clone());
        Ok(Self {
            ledger: Ledger::new(Signed::new(channel("ledger")?, signer())),
            items: Items::new(Signed::new(channel("items")?, signer())),
            market: Market::new(Signed::new(channel("market")?, signer())),
            redemption: Redemption::new(Signed::new(channel("redemption")?, signer())),
        })
    }
}

/// An upstream's failure as the gateway's answer: a refusal
/// (`economy_kit::error::classify`) passes through as the upstream gave it; an outage is
/// `UNAVAILABLE` / `UPSTREAM_UNAVAILABLE` naming `upstream`.
pub fn upstream_error(upstream: &'static str) -> impl Fn(Status) -> Status {
    move |status| match classify(&status) {
        Upstream::Refused(_) => status,
        Upstream::Unavailable => GatewayError::unavailable(upstream, format!("{:?}", status.code())).into(),
    }
}
