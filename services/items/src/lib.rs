//! Item Instances service (`economy.items.v1.ItemService`, docs/items.md):
//! templates, non-stackable instances owned by users, their
//! `available -> locked(holder) -> available | transferred | used`,
//! `available -> expired | revoked` state machine, and an append-only event history.
//!
//! Layers: `domain` (rules, no SQL or gRPC), `store` (sqlx, owns `migrations/items`),
//! `grpc` (proto conversion, authorization, error mapping); `jobs` runs the item-expiry
//! and lock-expiry workers.

pub mod domain;
pub mod grpc;
pub mod jobs;
pub mod metrics;
pub mod store;

use std::time::Duration;

use economy_kit::db::DbOptions;
use economy_kit::identity::IdentityKey;
use economy_kit::jobs::Scheduler;
use economy_kit::schedule::{Schedule, time_zone};
use economy_kit::server::{RunningServer, ServeOptions, ServerLimits, spawn_with};
use economy_kit::time::{SharedClock, system_clock};
use economy_kit::tls::ServerTls;
use economy_proto::items::v1::item_service_server::ItemServiceServer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

/// Name under which the service reports health.
pub const SERVICE_NAME: &str = "economy.items.v1.ItemService";

/// `[items]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ItemsConfig {
    /// Listen address (`127.0.0.1:50062`; port 0 picks one).
    pub listen: String,
    /// TLS of the server (docs/operations.md, "TLS"); empty: plaintext.
    pub tls: ServerTls,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Pool settings.
    pub database: DbOptions,
    /// Period of the item-expiry job, seconds (at least 1).
    pub item_expiry_interval_secs: u64,
    /// Period of the lock-expiry job, seconds (at least 1).
    pub lock_expiry_interval_secs: u64,
    /// `WatchItemEvents` sends a heartbeat after this many seconds without a message (at
    /// least 1; docs/items.md, "Watching events").
    pub watch_heartbeat_secs: u64,
    /// A lock (on sale, pending redemption) held longer than this many days is stale:
    /// listed by `GetItemReport`, counted in `economy_items_stale`, a finding of the
    /// consistency check (docs/items.md, "Reports"). At least 1.
    pub stale_lock_after_days: u64,
    /// When the daily items report runs (docs/items.md, "Reports"): five cron fields read
    /// in `time_zone`, once per instant across replicas (docs/operations.md, "Background
    /// jobs"). Default `0 4 * * *`.
    pub report_schedule: String,
    /// IANA time zone of the schedules, e.g. `UTC` (the default) or `Europe/Berlin`.
    pub time_zone: String,
    /// Source of the business "now" (expiries, leases, jobs' cutoffs): the system clock;
    /// not read from files, a test or the stack builder may inject a manual one.
    #[serde(skip, default = "system_clock")]
    pub clock: SharedClock,
}

impl Default for ItemsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50062".into(),
            tls: ServerTls::default(),
            database_url: "sqlite://data/items.db".into(),
            database: DbOptions::default(),
            item_expiry_interval_secs: 60,
            lock_expiry_interval_secs: 30,
            watch_heartbeat_secs: 15,
            stale_lock_after_days: grpc::DEFAULT_STALE_LOCK_DAYS,
            report_schedule: "0 4 * * *".into(),
            time_zone: "UTC".into(),
            clock: system_clock(),
        }
    }
}

impl ItemsConfig {
    /// `report_schedule` in `time_zone`.
    ///
    /// Errors: an unknown zone or a bad expression, naming the setting.
    pub fn report_schedule(&self) -> anyhow::Result<Schedule> {
        let zone = time_zone(&self.time_zone, "items.time_zone")?;
        Schedule::parse(&self.report_schedule, zone, "items.report_schedule")
    }

    /// The job periods, each at least one second.
    pub fn job_intervals(&self) -> jobs::JobIntervals {
        jobs::JobIntervals {
            item_expiry: Duration::from_secs(self.item_expiry_interval_secs.max(1)),
            lock_expiry: Duration::from_secs(self.lock_expiry_interval_secs.max(1)),
        }
    }
}

/// Opens the database (migrating it), starts the expiry jobs (and, on PostgreSQL, the
/// listener that wakes event streams on other replicas' commits) and serves the API until
/// `shutdown` is cancelled; event streams end then too. Requests must carry an identity signed with `identity`.
pub async fn start(
    config: &ItemsConfig,
    identity: &IdentityKey,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let report_schedule = config.report_schedule()?;
    let store = store::ItemStore::open(&config.database_url, &config.database).await?;
    metrics::describe();
    jobs::spawn(store.clone(), config.clock.clone(), config.job_intervals(), shutdown.clone());
    store.spawn_relay(shutdown.clone());
    let watch = grpc::WatchOptions {
        heartbeat: Duration::from_secs(config.watch_heartbeat_secs.max(1)),
        shutdown: shutdown.clone(),
    };
    let reports = grpc::ReportOptions { stale_lock_age: grpc::days(config.stale_lock_after_days.max(1)) };
    let scheduler = Scheduler::new(store.db().clone(), config.clock.clone(), shutdown.clone());
    jobs::spawn_report(&scheduler, report_schedule, store.clone(), config.clock.clone(), reports);
    let api = grpc::ItemsApi::new(store, config.clock.clone(), watch).with_reports(reports);
    let service = ItemServiceServer::new(api)
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let routes = Routes::new(tonic::service::interceptor::InterceptedService::new(service, identity.clone()));
    let options = ServeOptions::tls(&config.tls, "items.tls")?;
    spawn_with(&config.listen, SERVICE_NAME, routes, limits, options, shutdown).await
}
