//! Market service (`economy.market.v1.MarketService`, docs/market.md): players
//! list stackable assets (frozen by a ledger hold) or items (locked by the items service)
//! and buy them; the seller receives the price minus the platform fee. It also runs the
//! platform's shop (offers bought for assets) and reward bundles (lottery payouts) as
//! exchanges.
//!
//! Layers: `domain` (listings, trades, fee, errors), `store` (sqlx, owns
//! `migrations/market`), `clients` (ledger and items as the `market` service), `service`
//! (the flows and the purchase saga), `grpc` (validation, conversion, error mapping);
//! `jobs` runs the recovery worker.

pub mod clients;
pub mod domain;
pub mod grpc;
pub mod jobs;
pub mod metrics;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use economy_kit::db::DbOptions;
use economy_kit::identity::{Caller, IdentityKey};
use economy_kit::server::{RunningServer, ServeOptions, ServerLimits, spawn_with};
use economy_kit::time::{SharedClock, system_clock};
use economy_kit::tls::{ClientTls, ServerTls};
use economy_proto::market::v1::market_service_server::MarketServiceServer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Name under which the service reports health.
pub const SERVICE_NAME: &str = "economy.market.v1.MarketService";

/// `[market]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MarketConfig {
    /// Listen address (`127.0.0.1:50064`; port 0 picks one).
    pub listen: String,
    /// TLS of the server (docs/operations.md, "TLS"); empty: plaintext.
    pub tls: ServerTls,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Pool settings.
    pub database: DbOptions,
    /// How its clients of other services verify them (docs/operations.md, "TLS");
    /// empty: plaintext.
    pub internal_tls: ClientTls,
    /// The ledger.
    pub ledger_url: String,
    /// The items service.
    pub items_url: String,
    /// Platform fee in basis points of the price (500 = 5%), 0..=10000.
    pub fee_bps: u32,
    /// Assets prices may be set in (`DIAMOND`).
    pub price_assets: Vec<String>,
    /// Sale period of listings without their own expiry, seconds (0: none).
    pub default_listing_ttl_secs: u64,
    /// The system account offer payments are settled to (`SYSTEM_SHOP_REVENUE`;
    /// docs/market.md, "Exchanges").
    pub offer_revenue_account: String,
    /// Period of the recovery worker, seconds.
    pub recovery_interval_secs: u64,
    /// Work untouched this long is resumed by the worker, seconds.
    pub stale_after_secs: u64,
    /// Source of the business "now" (expiries, leases, jobs' cutoffs): the system clock;
    /// not read from files, a test or the stack builder may inject a manual one.
    #[serde(skip, default = "system_clock")]
    pub clock: SharedClock,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50064".into(),
            tls: ServerTls::default(),
            database_url: "sqlite://data/market.db".into(),
            database: DbOptions::default(),
            internal_tls: ClientTls::default(),
            ledger_url: "http://127.0.0.1:50061".into(),
            items_url: "http://127.0.0.1:50062".into(),
            fee_bps: 500,
            price_assets: vec!["DIAMOND".into()],
            default_listing_ttl_secs: 0,
            offer_revenue_account: "SYSTEM_SHOP_REVENUE".into(),
            recovery_interval_secs: 5,
            stale_after_secs: 30,
            clock: system_clock(),
        }
    }
}

/// Opens the database (migrating it), starts the recovery worker and serves the API
/// until `shutdown`. Requests must carry an identity signed with `identity`; the market
/// calls the ledger and items as the service `market`; `config.clock` decides sale
/// periods and stale work (tests move it).
pub async fn start(
    config: &MarketConfig,
    identity: &IdentityKey,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    anyhow::ensure!(config.fee_bps <= 10_000, "market.fee_bps must be at most 10000");
    anyhow::ensure!(
        economy_kit::accounts::is_system_account(&config.offer_revenue_account),
        "market.offer_revenue_account must be SYSTEM_ followed by A-Z, 0-9 or '_' (at most 64 characters)"
    );
    let store = store::MarketStore::open(&config.database_url, &config.database).await?;
    let timeout = Duration::from_secs(limits.request_timeout_secs);
    let signer = || identity.signer(Caller::service("market"));
    let channel = |url: &str| clients::channel(url, &config.internal_tls, "market.internal_tls", timeout);
    let market = Arc::new(service::Market {
        store,
        ledger: clients::ledger::Ledger::new(channel(&config.ledger_url)?, signer()),
        items: clients::items::Items::new(channel(&config.items_url)?, signer()),
        clock: config.clock.clone(),
        rules: service::MarketRules {
            fee_bps: config.fee_bps,
            price_assets: config.price_assets.clone(),
            default_listing_ttl_ms: i64::try_from(config.default_listing_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            revenue_account: config.offer_revenue_account.clone(),
            exchange_lease_ms: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX).saturating_add(1_000),
        },
    });
    let secs = |value: u64| Duration::from_secs(value.max(1));
    metrics::describe();
    jobs::spawn(market.clone(), secs(config.recovery_interval_secs), secs(config.stale_after_secs), shutdown.clone());
    let api = MarketServiceServer::new(grpc::MarketApi::new(market))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let routes = Routes::new(tonic::service::interceptor::InterceptedService::new(api, identity.clone()));
    let options = ServeOptions::tls(&config.tls, "market.tls")?;
    spawn_with(&config.listen, SERVICE_NAME, routes, limits, options, shutdown).await
}
