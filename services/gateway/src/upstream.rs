//! Typed clients of the upstream services for the gateway's own RPCs, over the proxy's
//! channels, signed with the caller's identity (backpack) or the gateway's own
//! (consistency checks). Failures of an upstream become `UNAVAILABLE` /
//! `UPSTREAM_UNAVAILABLE` naming it, except business answers which pass through. And the
//! upstreams' health changes, logged once each (`HealthChanges`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

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

/// The last health the probe saw of each upstream (`crate::jobs::spawn_health_probe`), so
/// that each change is logged once, naming the upstream: `warn` when it stops serving (or
/// is not serving when first probed), `info` when it serves again.
#[derive(Debug, Clone, Default)]
pub struct HealthChanges(Arc<Mutex<HashMap<String, bool>>>);

impl HealthChanges {
    /// Records the probe's answer for `upstream`; returns whether it was a change (and so
    /// logged).
    pub fn observe(&self, upstream: &str, serving: bool) -> bool {
        let previous = self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(upstream.to_owned(), serving);
        let changed = previous.map_or(!serving, |before| before != serving);
        match (changed, serving) {
            (false, _) => {}
            (true, true) => tracing::info!(upstream, "upstream serving again"),
            (true, false) => tracing::warn!(upstream, "upstream not serving"),
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use economy_kit::testing::LogBuffer;

    use super::*;

    #[test]
    fn each_health_change_is_logged_once_with_the_upstream() {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let changes = HealthChanges::default();
        let seen = tracing::subscriber::with_default(subscriber, || {
            [("ledger", true), ("items", false), ("items", false), ("ledger", true), ("items", true), ("ledger", false)]
                .map(|(upstream, serving)| changes.observe(upstream, serving))
        });
        assert_eq!(seen, [false, true, false, false, true, true]);
        let logs = buffer.text();
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 3, "{logs}");
        assert!(
            lines[0].contains("WARN")
                && lines[0].contains("upstream not serving")
                && lines[0].contains("upstream=\"items\"")
        );
        assert!(
            lines[1].contains("INFO")
                && lines[1].contains("upstream serving again")
                && lines[1].contains("upstream=\"items\"")
        );
        assert!(lines[2].contains("WARN") && lines[2].contains("upstream=\"ledger\""), "{logs}");
    }
}
