//! The one way to start the whole stack in one process: the ledger, items, redemption
//! and market services, each on its own port speaking real gRPC, and the gateway in front
//! of them as the only public endpoint (ARCHITECTURE.md, "Bird's-eye view").
//!
//! `economy up`, economy-bench and every test that needs more than one service start it
//! here: [`StackBuilder`] takes every service's configuration (listen addresses, database
//! URLs, secrets, limits, a shared clock), starts the services in dependency order, wires
//! each one's upstream URLs to the others' bound addresses, and returns a
//! [`RunningStack`] that knows where everything listens and stops it gateway first.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use economy_stack::{Service, StackBuilder};
//! let stack = StackBuilder::new()
//!     .any_port()
//!     .sqlite_dir(std::path::Path::new("/tmp/economy"))
//!     .identity_secret("a secret of at least sixteen characters")
//!     .jwt_secret("another secret of sixteen characters")
//!     .start()
//!     .await?;
//! println!("gateway at {}", stack.url(Service::Gateway).unwrap_or_default());
//! stack.stop().await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use economy_gateway::config::GatewayConfig;
use economy_gateway::registry::Registry;
use economy_items::ItemsConfig;
use economy_kit::identity::{IdentityConfig, IdentityKey};
use economy_kit::server::{RunningServer, ServerLimits};
use economy_kit::time::SharedClock;
use economy_ledger::LedgerConfig;
use economy_market::MarketConfig;
use economy_redemption::RedemptionConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::tls::DevPki;

pub mod tls;

/// One server of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// The Asset Ledger.
    Ledger,
    /// Item Instances.
    Items,
    /// Redemption orders (calls Items).
    Redemption,
    /// The player market (calls the Ledger and Items).
    Market,
    /// The public gateway (calls every other service).
    Gateway,
}

impl Service {
    /// Every server, in start order: each after the services it calls.
    pub const ALL: [Self; 5] = [Self::Ledger, Self::Items, Self::Redemption, Self::Market, Self::Gateway];

    /// The services behind the gateway, in start order.
    pub const BACKENDS: [Self; 4] = [Self::Ledger, Self::Items, Self::Redemption, Self::Market];

    /// Lowercase name: the configuration section and the gateway's upstream name
    /// (`ledger`, `items`, `redemption`, `market`, `gateway`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ledger => "ledger",
            Self::Items => "items",
            Self::Redemption => "redemption",
            Self::Market => "market",
            Self::Gateway => "gateway",
        }
    }

    /// The services this one calls (they must run for it to start).
    pub fn calls(self) -> &'static [Self] {
        match self {
            Self::Ledger | Self::Items => &[],
            Self::Redemption => &[Self::Items],
            Self::Market => &[Self::Ledger, Self::Items],
            Self::Gateway => &Self::BACKENDS,
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Every setting of an in-process stack: each server's own section, the identity secret
/// they share and the limits of every gRPC server (docs/operations.md, "Configuration").
#[derive(Debug, Clone, Default)]
pub struct StackConfig {
    /// `[gateway]`; its `upstreams` are filled with the services started beside it.
    pub gateway: GatewayConfig,
    /// `[ledger]`.
    pub ledger: LedgerConfig,
    /// `[items]`.
    pub items: ItemsConfig,
    /// `[redemption]`; its `items_url` is the Items started beside it.
    pub redemption: RedemptionConfig,
    /// `[market]`; its `ledger_url` and `items_url` are the services started beside it.
    pub market: MarketConfig,
    /// `[identity]`: the secret every service signs and verifies internal calls with.
    pub identity: IdentityConfig,
    /// `[server]`: limits of every gRPC server (the request deadline is also the
    /// services' deadline on their upstream calls).
    pub limits: ServerLimits,
}

impl StackConfig {
    /// The listen address of `service` (`127.0.0.1:0` picks a free port).
    pub fn listen(&self, service: Service) -> &str {
        match service {
            Service::Ledger => &self.ledger.listen,
            Service::Items => &self.items.listen,
            Service::Redemption => &self.redemption.listen,
            Service::Market => &self.market.listen,
            Service::Gateway => &self.gateway.listen,
        }
    }

    /// The listen address of `service`, to change.
    pub fn listen_mut(&mut self, service: Service) -> &mut String {
        match service {
            Service::Ledger => &mut self.ledger.listen,
            Service::Items => &mut self.items.listen,
            Service::Redemption => &mut self.redemption.listen,
            Service::Market => &mut self.market.listen,
            Service::Gateway => &mut self.gateway.listen,
        }
    }

    /// The database URL of `service` (`sqlite://…` or `postgres://…`).
    pub fn database_url(&self, service: Service) -> &str {
        match service {
            Service::Ledger => &self.ledger.database_url,
            Service::Items => &self.items.database_url,
            Service::Redemption => &self.redemption.database_url,
            Service::Market => &self.market.database_url,
            Service::Gateway => &self.gateway.database_url,
        }
    }

    /// The database URL of `service`, to change.
    pub fn database_url_mut(&mut self, service: Service) -> &mut String {
        match service {
            Service::Ledger => &mut self.ledger.database_url,
            Service::Items => &mut self.items.database_url,
            Service::Redemption => &mut self.redemption.database_url,
            Service::Market => &mut self.market.database_url,
            Service::Gateway => &mut self.gateway.database_url,
        }
    }

    /// Serves the whole stack over TLS with `pki` (docs/operations.md, "TLS"): the
    /// gateway presents the server certificate; the services also require the client
    /// certificate (mTLS) that every internal client (gateway, market, redemption)
    /// presents, verifying the servers against the CA.
    pub fn set_tls(&mut self, pki: &DevPki) {
        self.gateway.tls = pki.server_tls(false);
        self.ledger.tls = pki.server_tls(true);
        self.items.tls = pki.server_tls(true);
        self.redemption.tls = pki.server_tls(true);
        self.market.tls = pki.server_tls(true);
        self.gateway.internal_tls = pki.client_tls();
        self.redemption.internal_tls = pki.client_tls();
        self.market.internal_tls = pki.client_tls();
    }

    /// Gives every server the same source of "now".
    pub fn set_clock(&mut self, clock: &SharedClock) {
        self.ledger.clock = clock.clone();
        self.items.clock = clock.clone();
        self.redemption.clock = clock.clone();
        self.market.clock = clock.clone();
        self.gateway.clock = clock.clone();
    }
}

/// Configures and starts a stack. Starts every server unless [`StackBuilder::services`]
/// names fewer; each keeps its configured listen address and database unless told
/// otherwise.
#[derive(Debug, Clone)]
pub struct StackBuilder {
    config: StackConfig,
    services: Vec<Service>,
}

impl Default for StackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StackBuilder {
    /// Every server with its default settings (fixed ports 50051 and 50061-50064, SQLite
    /// files under `data/`, the system clock; no secrets).
    pub fn new() -> Self {
        Self::from_config(StackConfig::default())
    }

    /// Every server with `config`.
    pub fn from_config(config: StackConfig) -> Self {
        Self { config, services: Service::ALL.to_vec() }
    }

    /// Every server on `127.0.0.1:0`: the system picks free ports; [`RunningStack`] says
    /// which.
    pub fn any_port(mut self) -> Self {
        for service in Service::ALL {
            *self.config.listen_mut(service) = "127.0.0.1:0".to_owned();
        }
        self
    }

    /// `service`'s database at `url` (`sqlite://…` or `postgres://…`; each service owns
    /// its schema, so every service needs a database of its own).
    pub fn database_url(mut self, service: Service, url: impl Into<String>) -> Self {
        *self.config.database_url_mut(service) = url.into();
        self
    }

    /// Every service's database as a SQLite file in `dir`: `<dir>/<service>.db`.
    pub fn sqlite_dir(mut self, dir: &Path) -> Self {
        for service in Service::ALL {
            *self.config.database_url_mut(service) =
                format!("sqlite://{}", dir.join(format!("{}.db", service.name())).display());
        }
        self
    }

    /// Starts only `services` (with every service they call, which `start` checks). The
    /// gateway's upstream of a service not started is a loopback address nothing
    /// listens on, so calls to it fail as UNAVAILABLE.
    pub fn services(mut self, services: &[Service]) -> Self {
        self.services = Service::ALL.into_iter().filter(|service| services.contains(service)).collect();
        self
    }

    /// The identity secret shared by every service (at least 16 characters).
    pub fn identity_secret(mut self, secret: impl Into<String>) -> Self {
        self.config.identity.secret = secret.into();
        self
    }

    /// The HS256 secret the gateway verifies bearer tokens with (at least 16 characters).
    pub fn jwt_secret(mut self, secret: impl Into<String>) -> Self {
        self.config.gateway.auth.hs256_secret = secret.into();
        self
    }

    /// The limits of every gRPC server.
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.config.limits = limits;
        self
    }

    /// One source of "now" for every server: a test passes a `ManualClock` and moves
    /// time instead of sleeping.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.config.set_clock(&clock);
        self
    }

    /// Every server over TLS with the development `pki` ([`StackConfig::set_tls`]).
    pub fn tls(mut self, pki: &DevPki) -> Self {
        self.config.set_tls(pki);
        self
    }

    /// Any other setting of any server.
    pub fn configure(mut self, configure: impl FnOnce(&mut StackConfig)) -> Self {
        configure(&mut self.config);
        self
    }

    /// The settings so far.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// Starts the selected servers, each after the services it calls, wiring their
    /// upstream URLs to the addresses actually bound. Fails when a selected server
    /// needs a service not selected, when the identity secret is refused, or when a
    /// server cannot start (the ones already started are stopped first).
    pub async fn start(self) -> anyhow::Result<RunningStack> {
        let Self { config, services } = self;
        // The gateway alone may miss services: their upstreams are dead addresses.
        for service in services.iter().filter(|service| **service != Service::Gateway) {
            if let Some(missing) = service.calls().iter().find(|called| !services.contains(called)) {
                anyhow::bail!("the {service} calls the {missing}: start both");
            }
        }
        let identity = IdentityKey::new(&config.identity).context("invalid identity secret")?;
        let mut stack = RunningStack { config, identity, servers: Vec::new() };
        for service in services {
            if let Err(error) = stack.start_service(service).await {
                if let Err(stopping) = stack.stop().await {
                    return Err(error.context(format!("and stopping the servers already started: {stopping:#}")));
                }
                return Err(error);
            }
        }
        Ok(stack)
    }
}

/// A server of the stack and the token that stops it.
#[derive(Debug)]
struct Member {
    service: Service,
    server: RunningServer,
    shutdown: CancellationToken,
}

/// A started stack: where each server listens, the settings it runs with, and how to
/// stop (or restart) a server or the whole stack. Servers still running when this is
/// dropped keep serving until the process ends.
#[derive(Debug)]
pub struct RunningStack {
    config: StackConfig,
    identity: IdentityKey,
    /// In start order.
    servers: Vec<Member>,
}

impl RunningStack {
    /// The settings the stack runs with: each listen address is the one bound (a port
    /// picked for `:0` included) and the upstream URLs are wired.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// The key every server signs and verifies internal calls with.
    pub fn identity(&self) -> &IdentityKey {
        &self.identity
    }

    /// The bound address of `service`, if it runs.
    pub fn addr(&self, service: Service) -> Option<SocketAddr> {
        self.member(service).map(|member| member.server.addr)
    }

    /// `http://host:port` (`https://` over TLS) of `service`, if it runs.
    pub fn url(&self, service: Service) -> Option<String> {
        self.member(service).map(|member| member.server.url())
    }

    /// The running servers, in start order.
    pub fn running(&self) -> impl Iterator<Item = (Service, &RunningServer)> {
        self.servers.iter().map(|member| (member.service, &member.server))
    }

    fn member(&self, service: Service) -> Option<&Member> {
        self.servers.iter().find(|member| member.service == service)
    }

    /// Starts `service` — or starts it again after [`RunningStack::stop_service`], on the
    /// same address and database — wired to the services running beside it.
    pub async fn start_service(&mut self, service: Service) -> anyhow::Result<()> {
        anyhow::ensure!(self.member(service).is_none(), "the {service} is already running");
        self.wire(service)?;
        let shutdown = CancellationToken::new();
        let (config, identity, limits) = (&self.config, &self.identity, &self.config.limits);
        let token = shutdown.clone();
        let started = match service {
            Service::Ledger => economy_ledger::start(&config.ledger, identity, limits, token).await,
            Service::Items => economy_items::start(&config.items, identity, limits, token).await,
            Service::Redemption => economy_redemption::start(&config.redemption, identity, limits, token).await,
            Service::Market => economy_market::start(&config.market, identity, limits, token).await,
            Service::Gateway => economy_gateway::start(&config.gateway, identity, limits, token).await,
        };
        let server = started.with_context(|| format!("cannot start the {service}"))?;
        // A restart binds the same port again, so clients and callers keep their URL.
        *self.config.listen_mut(service) = server.addr.to_string();
        let position = self.servers.iter().position(|member| member.service > service).unwrap_or(self.servers.len());
        self.servers.insert(position, Member { service, server, shutdown });
        Ok(())
    }

    /// Points `service`'s upstream URLs at the servers it calls.
    fn wire(&mut self, service: Service) -> anyhow::Result<()> {
        let url_of = |stack: &Self, called: Service| {
            stack.url(called).ok_or_else(|| anyhow::anyhow!("the {service} calls the {called}, which is not running"))
        };
        match service {
            Service::Ledger | Service::Items => {}
            Service::Redemption => self.config.redemption.items_url = url_of(self, Service::Items)?,
            Service::Market => {
                self.config.market.ledger_url = url_of(self, Service::Ledger)?;
                self.config.market.items_url = url_of(self, Service::Items)?;
            }
            Service::Gateway => {
                let scheme = if self.config.gateway.internal_tls.enabled() { "https" } else { "http" };
                let mut upstreams = std::mem::take(&mut self.config.gateway.upstreams);
                for backend in Service::BACKENDS {
                    let url = match self.url(backend) {
                        Some(url) => url,
                        None => format!("{scheme}://{}", unused_address()?),
                    };
                    upstreams.insert(backend.name().to_owned(), url);
                }
                // A package routed to an upstream the stack does not know (added to the
                // protos later) keeps its configured URL, or gets a dead one.
                for name in Registry::load(economy_proto::FILE_DESCRIPTOR_SET)?.upstreams() {
                    if let std::collections::btree_map::Entry::Vacant(entry) = upstreams.entry(name) {
                        entry.insert(format!("{scheme}://{}", unused_address()?));
                    }
                }
                self.config.gateway.upstreams = upstreams;
            }
        }
        Ok(())
    }

    /// Stops `service` (its database and address stay for [`RunningStack::start_service`]):
    /// it stops accepting, drains in-flight requests and its jobs end.
    pub async fn stop_service(&mut self, service: Service) -> anyhow::Result<()> {
        let position = self
            .servers
            .iter()
            .position(|member| member.service == service)
            .with_context(|| format!("the {service} is not running"))?;
        let member = self.servers.remove(position);
        member.server.stop().await.with_context(|| format!("the {service} ended with an error"))
    }

    /// Stops every server: the gateway first, so no request in flight loses its
    /// upstream, then the services in reverse start order. Returns the first error.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(member) = self.servers.pop() {
            let service = member.service;
            if let Err(error) = member.server.stop().await {
                first_error.get_or_insert(error.context(format!("the {service} ended with an error")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Serves until `signal` resolves or a server ends on its own, then stops the stack
    /// like [`RunningStack::stop`]. A server that ended on its own is an error (its own,
    /// or "stopped unexpectedly").
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (mut front, mut back) = (JoinSet::new(), JoinSet::new());
        let (mut front_tokens, mut back_tokens) = (Vec::new(), Vec::new());
        for Member { service, server, shutdown } in self.servers {
            let (set, tokens) = match service {
                Service::Gateway => (&mut front, &mut front_tokens),
                _ => (&mut back, &mut back_tokens),
            };
            tokens.push(shutdown);
            set.spawn(async move { (service, server.wait().await) });
        }
        let unexpected = tokio::select! {
            () = signal => None,
            Some(ended) = front.join_next() => Some(ended),
            Some(ended) = back.join_next() => Some(ended),
        };
        front_tokens.iter().for_each(CancellationToken::cancel);
        while let Some(ended) = front.join_next().await {
            let (service, result) = ended?;
            result.with_context(|| format!("the {service} ended with an error"))?;
        }
        back_tokens.iter().for_each(CancellationToken::cancel);
        while let Some(ended) = back.join_next().await {
            let (service, result) = ended?;
            result.with_context(|| format!("the {service} ended with an error"))?;
        }
        match unexpected {
            None => Ok(()),
            Some(ended) => {
                let (service, result) = ended?;
                result.with_context(|| format!("the {service} ended with an error"))?;
                anyhow::bail!("the {service} stopped unexpectedly")
            }
        }
    }
}

/// A loopback address nothing listens on (the port was free a moment ago).
fn unused_address() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_order_puts_callees_first() {
        for (index, service) in Service::ALL.iter().enumerate() {
            for called in service.calls() {
                let position = Service::ALL.iter().position(|other| other == called).expect("listed");
                assert!(position < index, "{service} starts before {called}");
            }
        }
    }

    #[tokio::test]
    async fn a_service_without_what_it_calls_is_refused() {
        let refused = StackBuilder::new().services(&[Service::Market, Service::Ledger]).start().await;
        let message = format!("{:#}", refused.expect_err("market needs items"));
        assert!(message.contains("the market calls the items"), "{message}");
    }

    #[test]
    fn builder_settings_reach_every_server() {
        let dir = Path::new("/tmp/stack");
        let builder = StackBuilder::new().any_port().sqlite_dir(dir).database_url(Service::Ledger, "postgres://x/y");
        for service in Service::ALL {
            assert_eq!(builder.config().listen(service), "127.0.0.1:0");
        }
        assert_eq!(builder.config().database_url(Service::Ledger), "postgres://x/y");
        assert_eq!(builder.config().database_url(Service::Market), "sqlite:///tmp/stack/market.db");
    }
}
