//! Redemption Orders service (`economy.redemption.v1.RedemptionService`,
//! docs/redemption.md): one-time codes bound to item instances. Codes are stored only as
//! SHA-256; fulfilment consumes the item exactly once through an outbox delivered to Items.
//!
//! Layers: `domain` (codes, order lifecycle, errors), `store` (sqlx, owns
//! `migrations/redemption`), `service` (the flows across store and Items), `grpc`
//! (validation, conversion, error mapping), `clients` (the Items calls); `jobs` runs the
//! outbox dispatcher, order expiry and stale-creation recovery; `service::compensation`
//! holds the admins' audited tools.

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
use economy_kit::jobs::Scheduler;
use economy_kit::schedule::{Schedule, time_zone};
use economy_kit::server::{RunningServer, ServeOptions, ServerLimits, spawn_with};
use economy_kit::time::{SharedClock, system_clock};
use economy_kit::tls::{ClientTls, ServerTls};
use economy_proto::redemption::v1::redemption_service_server::RedemptionServiceServer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Name under which the service reports health.
pub const SERVICE_NAME: &str = "economy.redemption.v1.RedemptionService";

/// `[redemption]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedemptionConfig {
    /// Listen address (`127.0.0.1:50063`; port 0 picks one).
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
    /// The Items service.
    pub items_url: String,
    /// How long a code redeems, seconds (30 days).
    pub order_ttl_secs: u64,
    /// When the expiry job turns pending orders past their expiry into `expired` (and
    /// unlocks their items): five cron fields read in `time_zone` (default `0 * * * *`,
    /// hourly), once across replicas (docs/operations.md, "Background jobs"). A code past
    /// its expiry is refused at once whenever the job runs.
    pub expiry_schedule: String,
    /// IANA time zone of the schedules (default `UTC`).
    pub time_zone: String,
    /// Period of the outbox dispatcher and the stale-creation job, seconds.
    pub outbox_interval_secs: u64,
    /// An order still `locking` after this many seconds is failed (its creator gave up).
    pub locking_timeout_secs: u64,
    /// Failed fulfils allowed per caller and minute before they are locked out.
    pub failed_fulfils_per_minute: u32,
    /// Source of the business "now" (expiries, leases, jobs' cutoffs): the system clock;
    /// not read from files, a test or the stack builder may inject a manual one.
    #[serde(skip, default = "system_clock")]
    pub clock: SharedClock,
}

impl Default for RedemptionConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50063".into(),
            tls: ServerTls::default(),
            database_url: "sqlite://data/redemption.db".into(),
            database: DbOptions::default(),
            internal_tls: ClientTls::default(),
            items_url: "http://127.0.0.1:50062".into(),
            order_ttl_secs: 30 * 24 * 3600,
            expiry_schedule: "0 * * * *".into(),
            time_zone: "UTC".into(),
            outbox_interval_secs: 5,
            locking_timeout_secs: 120,
            failed_fulfils_per_minute: 10,
            clock: system_clock(),
        }
    }
}

/// Opens the database (migrating it), starts the jobs and serves the API until
/// `shutdown`. Requests must carry an identity signed with `identity`; `config.clock`
/// decides expiries and leases (tests move it).
pub async fn start(
    config: &RedemptionConfig,
    identity: &IdentityKey,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let zone = time_zone(&config.time_zone, "redemption.time_zone")?;
    let expiry_schedule = Schedule::parse(&config.expiry_schedule, zone, "redemption.expiry_schedule")?;
    let store = store::RedemptionStore::open(&config.database_url, &config.database).await?;
    let timeout = Duration::from_secs(limits.request_timeout_secs);
    let signer = identity.signer(Caller::service("redemption"));
    let items = clients::items::Items::new(
        clients::channel(&config.items_url, &config.internal_tls, "redemption.internal_tls", timeout)?,
        signer,
    );
    let service = Arc::new(service::Redemption {
        store,
        items,
        clock: config.clock.clone(),
        order_ttl_ms: i64::try_from(config.order_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        guard: service::guard::FulfillGuard::new(config.failed_fulfils_per_minute),
    });
    let intervals = jobs::JobIntervals {
        outbox_secs: config.outbox_interval_secs,
        expiry: expiry_schedule,
        locking_timeout_secs: config.locking_timeout_secs,
    };
    metrics::describe();
    let scheduler = Scheduler::new(service.store.db().clone(), config.clock.clone(), shutdown.clone());
    jobs::spawn(&scheduler, service.clone(), intervals, shutdown.clone());
    let api = RedemptionServiceServer::new(grpc::RedemptionApi::new(service))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let routes = Routes::new(tonic::service::interceptor::InterceptedService::new(api, identity.clone()));
    let options = ServeOptions::tls(&config.tls, "redemption.tls")?;
    spawn_with(&config.listen, SERVICE_NAME, routes, limits, options, shutdown).await
}
